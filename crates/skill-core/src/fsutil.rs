//! Crash-safe file writes.
//!
//! A write either fully happens or not at all: content goes to a temporary file in the same
//! folder (`tempfile`), is flushed to disk, and is then renamed over the destination, or
//! linked to it where the name must not exist yet.

use crate::{Error, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// An empty temporary file beside `dest` (same folder, so the final rename or link never
/// crosses file systems), named `.PREFIX...partial`, removed when dropped unpersisted. It gets
/// the mode `dest` has when it exists, else the mode a plainly created file would get (the
/// umask applies), not tempfile's owner-only default: a replaced file keeps its mode.
pub fn temp_beside(dest: &Path, prefix: &str) -> Result<tempfile::NamedTempFile> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let tmp = builder.tempfile_in(parent).map_err(|e| Error::io(parent, e))?;
    if let Ok(existing) = fs::metadata(dest) {
        tmp.as_file().set_permissions(existing.permissions()).map_err(|e| Error::io(tmp.path(), e))?;
    }
    Ok(tmp)
}

/// `contents` in a flushed temporary file beside `dest` (see [`temp_beside`]).
fn write_temp(dest: &Path, contents: &[u8]) -> Result<tempfile::NamedTempFile> {
    let mut tmp = temp_beside(dest, ".skd-")?;
    tmp.write_all(contents).and_then(|()| tmp.as_file().sync_all()).map_err(|e| Error::io(tmp.path(), e))?;
    Ok(tmp)
}

fn sync_parent(dest: &Path) {
    // Makes the rename itself durable; failure only weakens durability, never correctness.
    if let Some(parent) = dest.parent()
        && let Ok(dir) = File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

/// Replaces `dest` with `contents` atomically: readers see the old file or the new one.
pub fn atomic_write(dest: &Path, contents: &[u8]) -> Result<()> {
    write_temp(dest, contents)?.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    sync_parent(dest);
    Ok(())
}

/// Creates `dest` atomically, failing with [`Error::Conflict`] if it already exists.
///
/// The kernel refuses the final link or no-replace rename when the name is taken, so two
/// processes can never both "create" the same version file.
pub fn atomic_create_new(dest: &Path, contents: &[u8]) -> Result<()> {
    match write_temp(dest, contents)?.persist_noclobber(dest) {
        Ok(_) => {
            sync_parent(dest);
            Ok(())
        }
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(Error::Conflict(format!("{} already exists", dest.display())))
        }
        Err(e) => Err(Error::io(dest, e.error)),
    }
}

/// Reads a file as UTF-8, naming the first invalid byte offset when it is not.
pub fn read_utf8(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::Parse {
            path: path.to_path_buf(),
            line,
            message: format!("file is not valid UTF-8 (first bad byte at offset {offset})"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_written_file_has_a_plain_files_mode_and_a_replaced_one_keeps_its_own() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        let plain = dir.path().join("plain.txt");
        File::create(&plain).expect("create");
        let written = dir.path().join("written.txt");
        atomic_write(&written, b"new").expect("write");
        assert_eq!(mode(&written), mode(&plain), "as File::create makes it, not owner-only");
        fs::set_permissions(&written, fs::Permissions::from_mode(0o640)).expect("chmod");
        atomic_write(&written, b"replaced").expect("replace");
        assert_eq!((mode(&written), fs::read(&written).expect("read")), (0o640, b"replaced".to_vec()));
    }

    #[test]
    fn create_new_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("v1.md");
        atomic_create_new(&dest, b"one").expect("first create");
        let err = atomic_create_new(&dest, b"two").expect_err("second create must fail");
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        assert_eq!(fs::read(&dest).expect("read"), b"one");
        // no temp files left behind
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("a/b/SKILL.md");
        atomic_write(&dest, b"old").expect("write");
        atomic_write(&dest, b"new").expect("write");
        assert_eq!(fs::read(&dest).expect("read"), b"new");
    }

    #[test]
    fn read_utf8_names_offset_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("bad.md");
        fs::write(&p, b"ok\nbad \xff here").expect("write");
        let err = read_utf8(&p).expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("bad.md:2:"), "{msg}");
        assert!(msg.contains("offset 7"), "{msg}");
    }
}
