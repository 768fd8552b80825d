//! How a record holds its fields: as written, or as read back from any run folder.
use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// What a field of a record can hold: plain data with serde on both sides.
pub trait Plain: Clone + Debug + PartialEq + Default + Serialize + DeserializeOwned {}
impl<T: Clone + Debug + PartialEq + Default + Serialize + DeserializeOwned> Plain for T {}

/// The presence of a record's fields. Every record type takes it as a parameter, so one
/// definition serves both sides of the file:
///
/// - [`Written`] (the default): every field is there, as `tuneguard train` writes it; reading
///   one back fails on a missing field, as a resume reading its own `state.json` should;
/// - [`Partial`]: each field is an `Option`, `None` when the file lacks it (a run folder of an
///   older version, a hand-written one, a run that stopped early), and the records a reader
///   lists whole keep the keys this version does not know in `extra`.
///
/// Fields that are optional when written (`Option<T>`) are `Option<T>` under both.
pub trait Presence: Copy + Debug + Default + PartialEq + Eq + 'static {
    /// A field that the writer always writes.
    type Of<T: Plain>: Plain;
    /// The keys a record does not name (`()` when written; kept by key when read).
    type Extra: Plain;

    /// Reads a nullable field (`#[serde(default, deserialize_with = "P::nullable")]`): under
    /// [`Partial`], `Some(None)` is a `null` in the file and `None` a missing key.
    ///
    /// # Errors
    /// The deserializer's, for a value of another type.
    fn nullable<'de, D: Deserializer<'de>, T: Plain>(d: D) -> Result<Self::Of<Option<T>>, D::Error>;
}

/// Every field present: the records as `tuneguard train` writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written;

/// Every field optional, unknown keys kept: the records as a reader finds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Partial;

impl Presence for Written {
    type Of<T: Plain> = T;
    type Extra = ();

    fn nullable<'de, D: Deserializer<'de>, T: Plain>(d: D) -> Result<Option<T>, D::Error> {
        <Option<T> as Deserialize>::deserialize(d)
    }
}

impl Presence for Partial {
    type Of<T: Plain> = Option<T>;
    type Extra = BTreeMap<String, serde_json::Value>;

    fn nullable<'de, D: Deserializer<'de>, T: Plain>(d: D) -> Result<Option<Option<T>>, D::Error> {
        <Option<T> as Deserialize>::deserialize(d).map(Some)
    }
}
