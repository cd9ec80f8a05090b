//! The binary files models are kept in: little-endian numbers read with a bounds-checked
//! [`Reader`], closed by a CRC-32 (IEEE) of everything before it. Any damage is a
//! [`ModelError`], never a panic.

/// Why a model file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The file does not start with the magic of its kind.
    #[error("not a {0} model file (bad magic)")]
    Magic(&'static str),
    /// A version this build cannot read.
    #[error("model file version {found} is not supported (this build reads version {supported})")]
    Version {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The file ends before the part named.
    #[error("model file truncated in {0}")]
    Truncated(&'static str),
    /// The checksum does not match the content.
    #[error("model file checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// The checksum in the file.
        stored: u32,
        /// The checksum of the bytes before it.
        computed: u32,
    },
    /// Bytes after the checksum.
    #[error("{0} bytes after the end of the model")]
    TrailingBytes(usize),
    /// A field out of range.
    #[error("model file field {0} out of range")]
    Field(&'static str),
    /// A weight or statistic that is NaN or infinite.
    #[error("model file holds a number that is not finite in {0}")]
    NotFinite(&'static str),
}

/// Appends `text` with its length (u16; longer text is cut at a character boundary).
pub(crate) fn put_text(out: &mut Vec<u8>, text: &str) {
    let mut end = text.len().min(usize::from(u16::MAX));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = text.get(..end).unwrap_or_default();
    out.extend_from_slice(&u16::try_from(text.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Appends `values`, little endian.
pub(crate) fn put_f32s(out: &mut Vec<u8>, values: &[f32]) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends the checksum of everything in `out`.
pub(crate) fn seal(out: &mut Vec<u8>) {
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The bytes before the checksum that closes `bytes`, if it matches them.
pub(crate) fn unseal(bytes: &[u8]) -> Result<&[u8], ModelError> {
    let Some(body_len) = bytes.len().checked_sub(4) else {
        return Err(ModelError::Truncated("checksum"));
    };
    let (body, stored) = bytes.split_at(body_len);
    let stored = u32::from_le_bytes(
        stored
            .try_into()
            .map_err(|_| ModelError::Truncated("checksum"))?,
    );
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(ModelError::Checksum { stored, computed });
    }
    Ok(body)
}

/// Reads a model file from the front; each read names the part it is for, so a short file
/// says where it ends.
pub(crate) struct Reader<'a> {
    pub rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub fn take(&mut self, n: usize, part: &'static str) -> Result<&'a [u8], ModelError> {
        if self.rest.len() < n {
            return Err(ModelError::Truncated(part));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    /// The magic and version at the start of a file: refused unless they are `magic` and
    /// `version`.
    pub fn header(
        &mut self,
        magic: &[u8; 4],
        kind: &'static str,
        version: u32,
    ) -> Result<(), ModelError> {
        if self.take(4, "magic")? != magic {
            return Err(ModelError::Magic(kind));
        }
        let found = self.u32("version")?;
        if found != version {
            return Err(ModelError::Version {
                found,
                supported: version,
            });
        }
        Ok(())
    }

    pub fn u8(&mut self, part: &'static str) -> Result<u8, ModelError> {
        Ok(self.take(1, part)?.first().copied().unwrap_or(0))
    }

    pub fn u16(&mut self, part: &'static str) -> Result<u16, ModelError> {
        let b = self.take(2, part)?;
        Ok(u16::from_le_bytes(
            b.try_into().map_err(|_| ModelError::Truncated(part))?,
        ))
    }

    pub fn u32(&mut self, part: &'static str) -> Result<u32, ModelError> {
        let b = self.take(4, part)?;
        Ok(u32::from_le_bytes(
            b.try_into().map_err(|_| ModelError::Truncated(part))?,
        ))
    }

    pub fn u64(&mut self, part: &'static str) -> Result<u64, ModelError> {
        let b = self.take(8, part)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| ModelError::Truncated(part))?,
        ))
    }

    /// A finite `f64`.
    pub fn f64(&mut self, part: &'static str) -> Result<f64, ModelError> {
        let value = f64::from_bits(self.u64(part)?);
        if value.is_finite() {
            Ok(value)
        } else {
            Err(ModelError::NotFinite(part))
        }
    }

    /// A length-prefixed (u16) UTF-8 string.
    pub fn text(&mut self, part: &'static str) -> Result<String, ModelError> {
        let len = self.u16(part)?;
        let bytes = self.take(usize::from(len), part)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ModelError::Field(part))
    }

    pub fn f32s(&mut self, n: usize, part: &'static str) -> Result<Vec<f32>, ModelError> {
        let bytes = self.take(n.saturating_mul(4), part)?;
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| {
                f32::from_le_bytes([
                    c.first().copied().unwrap_or(0),
                    c.get(1).copied().unwrap_or(0),
                    c.get(2).copied().unwrap_or(0),
                    c.get(3).copied().unwrap_or(0),
                ])
            })
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::NotFinite(part));
        }
        Ok(values)
    }

    /// Refused unless everything was read.
    pub fn finish(&self) -> Result<(), ModelError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(ModelError::TrailingBytes(self.rest.len()))
        }
    }
}
