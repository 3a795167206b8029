//! SQL dialects and what each can do.

/// The SQL dialect a backend speaks. Differences between databases are expressed as
/// capability methods here, so the rest of the crate never asks "is this PostgreSQL?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite (through rusqlite).
    Sqlite,
    /// PostgreSQL (through sqlx).
    Postgres,
    /// MySQL or MariaDB (through sqlx).
    Mysql,
}

impl Dialect {
    /// The dialect's name.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        }
    }

    /// Whether `SELECT ... FOR UPDATE` exists (SQLite serializes writers instead).
    pub fn supports_for_update(self) -> bool {
        !matches!(self, Dialect::Sqlite)
    }

    /// Whether NULL sorts after every value in ascending order by default (PostgreSQL),
    /// so an explicit `NULLS FIRST` / `NULLS LAST` is needed to sort NULL lowest like the
    /// other dialects and the in-memory backend.
    pub fn nulls_sort_high(self) -> bool {
        matches!(self, Dialect::Postgres)
    }

    /// A column-level clause that makes text compare byte-wise (`COLLATE "C"` on
    /// PostgreSQL). MySQL gets a binary collation per table instead; SQLite's default
    /// BINARY collation already compares bytes.
    pub fn text_collation(self) -> Option<&'static str> {
        match self {
            Dialect::Postgres => Some("COLLATE \"C\""),
            _ => None,
        }
    }

    /// The type name to `CAST` an integer to text with (for `LIKE` on an integer column).
    pub fn text_cast_type(self) -> &'static str {
        match self {
            Dialect::Mysql => "CHAR",
            _ => "TEXT",
        }
    }

    /// Whether `SUM` of a BIGINT column returns a non-integer type (NUMERIC / DECIMAL)
    /// that is read back exactly by casting it to text.
    pub fn sum_as_text(self) -> bool {
        !matches!(self, Dialect::Sqlite)
    }

    /// Whether a `SUM` of a BIGINT column is computed as two sums, of its high and its low
    /// 32 bits, joined exactly in Rust (SQLite: its `SUM` of integers raises an error on a
    /// 64-bit overflow, and `TOTAL` is a float). The servers' sums are exact decimals.
    pub fn split_sums(self) -> bool {
        matches!(self, Dialect::Sqlite)
    }

    /// Whether tables can be clustered on their primary key with `WITHOUT ROWID`
    /// (SQLite; InnoDB always clusters on the primary key, PostgreSQL never does).
    pub fn without_rowid(self) -> bool {
        matches!(self, Dialect::Sqlite)
    }

    /// Whether long text needs a larger type than `TEXT` (MySQL's TEXT holds 64 KiB).
    pub fn long_text_type(self) -> Option<&'static str> {
        match self {
            Dialect::Mysql => Some("MEDIUMTEXT"),
            _ => None,
        }
    }

    /// Whether bounded text columns are plain `TEXT` (SQLite ignores lengths anyway).
    pub fn bounded_text_is_text(self) -> bool {
        matches!(self, Dialect::Sqlite)
    }
}
