//! tuneguard-data: training data for fine-tuning.
//!
//! - [`format`]: record shapes ([`DataFormat`]) with configurable field names;
//! - [`load`]: JSONL/CSV files → [`Example`]s, bad rows → [`Rejected`] (`rejected.jsonl`);
//! - [`tokenize`]: chat-template rendering and loss masks ([`TokenizedExample`]);
//! - [`batch`]: padding collation and packing into [`Batch`]es.
//! - [`split`]: seeded, optionally stratified train/validation split ([`split_indices`]);
//! - [`leakage`]: exact and near duplicates between train and validation ([`find_leaks`]), with
//!   [`normalize`] and [`minhash`] (MinHash signatures, LSH index).
pub mod augment;
pub mod batch;
mod csv_records;
pub mod error;
pub mod format;
pub mod leakage;
pub mod load;
pub mod minhash;
pub mod normalize;
pub mod parts;
pub mod provenance;
mod raw_rows;
pub mod record;
pub mod rejected;
pub mod split;
mod splitmix;
mod strict_json;
pub mod tokenize;

pub use batch::{collate_packed, collate_padded, num_supervised, plan_packing, Batch};
pub use error::{DataError, Result};
pub use format::DataFormat;
pub use leakage::{example_text, find_leaks, Leak, LeakKind, LeakRows, LeakageOptions};
pub use load::{load_file, load_reader, raw_rows, FileKind, LoadOptions, LoadedData, ShapeReport, ShapeSource};
pub use minhash::{jaccard, optimal_bands_rows, LshIndex, MinHasher, Signature};
pub use normalize::normalize_text;
pub use parts::{split_shared, RowParts, SharedKind};
pub use record::{Example, RejectKind};
pub use rejected::{write_rejected, LoadStats, Rejected, MAX_RAW_CHARS};
pub use split::{read_field_values, split_indices, SplitError, ValSize};
pub use splitmix::{splitmix64, splitmix64_stream};
pub use tokenize::{
    ChatTokenizer, Dropped, Overflow, TokenizeOptions, TokenizeStats, Tokenized, TokenizedExample, IGNORE_INDEX,
};
