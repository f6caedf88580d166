//! Errors of the screening module.

/// Everything that can go wrong loading a list or building a screener.
///
/// Line numbers are 1-based physical line numbers of the start of the
/// offending record (a quoted field may span several lines).
#[derive(Debug, thiserror::Error)]
pub enum ScreeningError {
    /// A list file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// File name.
        file: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The CSV layer itself failed (I/O inside the reader, ...).
    #[error("{file}: line {line}: CSV error: {message}")]
    Csv {
        /// File name.
        file: String,
        /// Line of the failing record (0 when unknown).
        line: u64,
        /// csv crate message.
        message: String,
    },
    /// A record has the wrong number of fields.
    #[error("{file}: line {line}: expected {expected} fields, found {found}")]
    FieldCount {
        /// File name.
        file: String,
        /// Line of the record.
        line: u64,
        /// Fields expected.
        expected: usize,
        /// Fields found.
        found: usize,
    },
    /// A field has an invalid value.
    #[error("{file}: line {line}: field `{field}`: {reason}")]
    InvalidField {
        /// File name.
        file: String,
        /// Line of the record.
        line: u64,
        /// Column name.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The generic CSV header lacks a required column.
    #[error("{file}: line 1: header: missing required column `{column}`")]
    MissingColumn {
        /// File name.
        file: String,
        /// Missing column.
        column: String,
    },
    /// Two records share an id.
    #[error(
        "{file}: line {line}: field `{field}`: duplicate id `{id}` (first on line {first_line})"
    )]
    DuplicateId {
        /// File name.
        file: String,
        /// Line of the second occurrence.
        line: u64,
        /// Id column name.
        field: String,
        /// The duplicated id.
        id: String,
        /// Line of the first occurrence.
        first_line: u64,
    },
    /// The list has no entries.
    #[error("{file}: sanctions list has no entries")]
    EmptyList {
        /// File name.
        file: String,
    },
    /// An alt file was given for a format that has none.
    #[error("{file}: an alias file is only valid for the OFAC SDN format")]
    UnexpectedAltFile {
        /// File name.
        file: String,
    },
    /// The list has more names or tokens than the index addresses (2³²).
    #[error("list `{list}`: too large to index")]
    ListTooLarge {
        /// List name.
        list: String,
    },
    /// No entry of the list has a name that normalises to at least one token.
    #[error("list `{list}`: no entry has a usable name")]
    NothingToIndex {
        /// List name.
        list: String,
    },
}
