//! A `sqlite://` table's file: noticing that it was deleted or replaced while in use.

use std::path::{Path, PathBuf};

use super::LeaseTable;

/// The file a SQLite lease table was opened in, and its identity then.
pub(super) struct SqliteFile {
    path: PathBuf,
    identity: FileIdentity,
}

impl SqliteFile {
    /// The file at `path` as it is now.
    pub(super) fn open(path: &Path) -> std::io::Result<SqliteFile> {
        Ok(SqliteFile {
            path: path.to_path_buf(),
            identity: FileIdentity::of(path)?,
        })
    }

    /// Fails if the file is gone or is another file now.
    fn check(&self) -> Result<(), sqlx::Error> {
        match FileIdentity::of(&self.path) {
            Ok(now) if now == self.identity => Ok(()),
            Ok(_) => Err(self.gone("was replaced by another file")),
            Err(e) => Err(self.gone(&format!("is gone ({e})"))),
        }
    }

    fn gone(&self, what: &str) -> sqlx::Error {
        sqlx::Error::Configuration(
            format!(
                "the SQLite lock file {} {what} since it was opened: locks in it are no longer \
                 shared with other processes; reconnect to use a new file",
                self.path.display()
            )
            .into(),
        )
    }
}

impl LeaseTable {
    /// Fails if this is a SQLite table whose file was deleted or replaced since it was
    /// opened: locks in an unlinked file are no longer shared, and a new file would restart
    /// the fences.
    pub(super) fn check_sqlite_file(&self) -> Result<(), sqlx::Error> {
        match &self.sqlite_file {
            Some(file) => file.check(),
            None => Ok(()),
        }
    }
}

/// The identity of a file (device and inode), to notice that it was deleted or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity(u64, u64);

impl FileIdentity {
    fn of(path: &Path) -> std::io::Result<FileIdentity> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(FileIdentity(meta.dev(), meta.ino()))
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Ok(FileIdentity(0, 0))
        }
    }
}
