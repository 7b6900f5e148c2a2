//! The storage-format marker every server backend keeps on its server
//! (`docs/design.md`, "Mixed versions").

use crate::error::LockError;
use crate::url::BackendUrl;

/// The storage format this build speaks: the names, values, scripts and sequences a
/// backend keeps on its server. Every backend records it there when it first sets up
/// (where it keeps it is in the backend's docs) and, when it opens, refuses a server set
/// up by a newer format with [`format_refused`]: two library versions that disagree about
/// the format never share keys silently (`docs/design.md`, "Mixed versions").
pub(crate) const FORMAT: u32 = 1;

/// The error for a backend whose server holds format marker `found` (> [`FORMAT`]).
pub(crate) fn format_refused(url: &BackendUrl, place: &str, found: u32) -> LockError {
    LockError::backend(
        &url.redacted,
        None,
        format!(
            "{place} was set up by a newer lockattr (storage format {found}); this build speaks \
             format {FORMAT}: upgrade lockattr in every process that shares this backend"
        ),
    )
}
