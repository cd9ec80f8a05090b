//! SHA-256 of executables, computed once per file version: a cache keyed by device, inode,
//! modification time and size, so a binary that many processes run is read once, and one that
//! is replaced on disk is hashed again.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// One version of one file: what the cache is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileVersion {
    /// Device the file lives on.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// Modification time, seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
    /// Size in bytes.
    pub size: u64,
}

impl FileVersion {
    /// The version of the file `metadata` describes.
    pub fn of(metadata: &Metadata) -> FileVersion {
        FileVersion {
            dev: metadata.dev(),
            ino: metadata.ino(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            size: metadata.size(),
        }
    }
}

/// Hashes of executables already read.
#[derive(Debug, Default)]
pub struct ExeHashes {
    hashes: HashMap<FileVersion, String>,
    /// How many files were read and hashed (cache misses).
    pub computed: u64,
}

/// Files whose hash the cache keeps before it starts over.
const CAPACITY: usize = 4096;

impl ExeHashes {
    /// The lowercase hex SHA-256 of the file at `path`, whose version is `version`; read only
    /// when that version has not been hashed before.
    pub fn hash(&mut self, path: &Path, version: FileVersion) -> io::Result<String> {
        if let Some(hash) = self.hashes.get(&version) {
            return Ok(hash.clone());
        }
        let hash = sha256_file(path)?;
        if self.hashes.len() >= CAPACITY {
            self.hashes.clear();
        }
        self.hashes.insert(version, hash.clone());
        self.computed = self.computed.saturating_add(1);
        Ok(hash)
    }
}

/// The lowercase hex SHA-256 of a file's content.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(64);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_once_per_version_and_again_after_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, b"abc").unwrap();
        let mut hashes = ExeHashes::default();
        let v1 = FileVersion::of(&std::fs::metadata(&path).unwrap());
        let sha_abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hashes.hash(&path, v1).unwrap(), sha_abc);
        assert_eq!(hashes.hash(&path, v1).unwrap(), sha_abc);
        assert_eq!(hashes.computed, 1);
        std::fs::write(&path, b"abcd").unwrap();
        let v2 = FileVersion::of(&std::fs::metadata(&path).unwrap());
        assert_ne!(v1, v2);
        assert_eq!(
            hashes.hash(&path, v2).unwrap(),
            "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"
        );
        assert_eq!(hashes.computed, 2);
    }
}
