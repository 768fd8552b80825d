//! tuneguard-data: training data for fine-tuning.
//!
//! - [`format`]: record shapes ([`DataFormat`]) with configurable field names;
//! - [`load`]: JSONL/CSV files → [`Example`]s, bad rows → [`Rejected`] (`rejected.jsonl`);
//! - [`tokenize`]: chat-template rendering and loss masks ([`TokenizedExample`]);
//! - [`batch`]: padding collation and packing into [`Batch`]es.
pub mod batch;
pub mod error;
pub mod format;
pub mod load;
pub mod record;
pub mod rejected;
pub mod tokenize;

pub use batch::{collate_packed, collate_padded, num_supervised, plan_packing, Batch};
pub use error::{DataError, Result};
pub use format::DataFormat;
pub use load::{load_file, load_reader, FileKind, LoadOptions, LoadedData};
pub use record::{Example, RejectKind};
pub use rejected::{write_rejected, LoadStats, Rejected, MAX_RAW_CHARS};
pub use tokenize::{ChatTokenizer, Overflow, TokenizeOptions, TokenizeStats, TokenizedExample, IGNORE_INDEX};
