//! Record shapes ([`DataFormat`]) with configurable field names, and detection of the shape from
//! a record's keys. A plain-data type of `summary.json` (`data.shapes`), defined in
//! tuneguard-records.
pub use tuneguard_records::format::*;
