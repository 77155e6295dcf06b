//! A full disk (or a used-up quota, the commonest failure on a cluster's scratch space) named
//! as such: which file could not be written and how much space is left where it goes.

use std::path::Path;

/// Whether `error` (or anything it wraps) is a write that failed for lack of space.
pub fn is_full(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let io_full = cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|code| code == libc::ENOSPC || code == libc::EDQUOT);
        // Writers that keep their own error type (Parquet's) carry the OS error as text.
        let text = cause.to_string();
        io_full
            || text.contains(&format!("os error {}", libc::ENOSPC))
            || text.contains(&format!("os error {}", libc::EDQUOT))
    })
}

/// `error`, and for a full disk the command's next step (`hint`) on a line of its own.
pub fn with_hint(error: anyhow::Error, hint: impl FnOnce() -> String) -> anyhow::Error {
    if is_full(&error) {
        anyhow::anyhow!("{error:#}\n{}", hint())
    } else {
        error
    }
}

/// The error of a failed write of `path`: for a full disk, what is left on its filesystem.
pub fn write_error(path: &Path, error: anyhow::Error) -> anyhow::Error {
    if !is_full(&error) {
        return error.context(format!("cannot write {}", path.display()));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let free = match free_bytes(dir) {
        Some(bytes) => format!("{} free", crate::size::human_bytes(bytes as f64)),
        None => "free space unknown".to_string(),
    };
    error.context(format!(
        "cannot write {}: no space left on its filesystem ({free} in {}); files written before are intact",
        path.display(),
        dir.display()
    ))
}

/// Bytes an unprivileged process may still write on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs this function owns.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}
