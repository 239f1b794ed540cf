//! Crash-safe file writes.
//!
//! A write either fully happens or not at all: content goes to a temporary file in the same
//! folder, is flushed to disk, and is then renamed (or hard-linked) over the destination.

use crate::{Error, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

fn temp_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let unique = format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    );
    dest.with_file_name(unique)
}

fn write_temp(dest: &Path, contents: &[u8]) -> Result<PathBuf> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = temp_path(dest);
    let mut file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
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
    let tmp = write_temp(dest, contents)?;
    if let Err(e) = fs::rename(&tmp, dest) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(dest, e));
    }
    sync_parent(dest);
    Ok(())
}

/// Creates `dest` atomically, failing with [`Error::Conflict`] if it already exists.
///
/// Uses a hard link, which the kernel refuses when the name is taken, so two processes can
/// never both "create" the same version file.
pub fn atomic_create_new(dest: &Path, contents: &[u8]) -> Result<()> {
    let tmp = write_temp(dest, contents)?;
    let linked = fs::hard_link(&tmp, dest);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_parent(dest);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(Error::Conflict(format!("{} already exists", dest.display())))
        }
        Err(e) => Err(Error::io(dest, e)),
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
