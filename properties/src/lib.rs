//! Read Java `.properties` files like the RV&S server does, with line numbers.
//!
//! This is the one reader of mailgate: the settings loader and the in-place
//! secret encryption both use it, so what `mailgate encrypt` encrypts is
//! exactly what loading later decrypts and uses.
//!
//! # Rules
//!
//! The syntax is Java's `Properties.load` (its `LineReader` and
//! `loadConvert`), ported rule for rule:
//!
//! * natural lines end at `\n`, `\r` or `\r\n`;
//! * leading space, tab and form feed (only these three) are skipped; a line
//!   whose first other character is `#` or `!` is a comment; blank lines are
//!   skipped;
//! * a line ending in an odd number of backslashes continues on the next
//!   line, whose leading whitespace is skipped; at the end of the file a
//!   dangling continuation backslash is dropped and the line kept, as Java
//!   does (`k=abc\` at EOF is `k` = `abc`);
//! * the key ends at the first unescaped `=`, `:` or whitespace; whitespace
//!   and at most one `=`/`:` follow it; the rest of the logical line is the
//!   value, trailing whitespace included;
//! * escapes: `\t`, `\n`, `\r`, `\f`, `\uXXXX` (UTF-16 code units; a valid
//!   surrogate pair becomes one character), and `\` before any other
//!   character stands for that character. A malformed `\uXXXX` is an
//!   [`Error`]. An unpaired surrogate, which Java keeps but a Rust string
//!   cannot hold, becomes U+FFFD.
//!
//! # Encoding
//!
//! Java's `Properties.load(InputStream)`, which the server uses, reads
//! ISO-8859-1: every byte is the character U+0000..U+00FF of the same number
//! (not windows-1252: bytes 0x80..0x9F are C1 controls, not `€` and friends).
//! mailgate extends this, as documented: a UTF-8 byte order mark is skipped,
//! and when the rest of the file is valid UTF-8 it is read as UTF-8 (a file
//! saved by a modern editor). Otherwise the whole file, BOM excepted, is
//! ISO-8859-1. See [`Encoding::detect`].
//!
//! Every character that matters to the syntax is ASCII, and neither encoding
//! uses an ASCII byte inside a multi-byte character, so the structure is
//! found on the raw bytes and [`Entry::value_span`] is an exact byte range of
//! the input, for editing a value in place.
//!
//! ```
//! let doc = mailgate_properties::parse(b"# mail\nhost = smtp.example.com\npw=caf\xe9\\\n").unwrap();
//! assert_eq!(doc.encoding, mailgate_properties::Encoding::Latin1);
//! let pw = &doc.entries[1];
//! assert_eq!((pw.key.as_str(), pw.value.as_str(), pw.line), ("pw", "caf\u{e9}", 3));
//! assert_eq!(&b"# mail\nhost = smtp.example.com\npw=caf\xe9\\\n"[pw.value_span.clone()], b"caf\xe9\\");
//! ```

use std::fmt;
use std::ops::Range;

pub mod fs;

/// The largest properties file mailgate reads: 4 MiB. A real RV&S
/// `is.properties` is some kilobytes; beyond this it is not a config file.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

use zeroize::Zeroizing;

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How the bytes of a file are read as characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (mailgate's extension: the file is valid UTF-8).
    Utf8,
    /// ISO-8859-1, Java's `Properties.load(InputStream)`: byte `n` is U+00nn.
    Latin1,
}

impl Encoding {
    /// The encoding of `bytes` (a file's content, a UTF-8 BOM included or
    /// not): UTF-8 when the bytes after any BOM are valid UTF-8, else
    /// ISO-8859-1.
    pub fn detect(bytes: &[u8]) -> Encoding {
        let body = bytes.strip_prefix(BOM).unwrap_or(bytes);
        if std::str::from_utf8(body).is_ok() {
            Encoding::Utf8
        } else {
            Encoding::Latin1
        }
    }
}

/// A parsed file.
#[derive(Debug)]
#[non_exhaustive]
pub struct Document {
    /// How the file was read.
    pub encoding: Encoding,
    /// Whether it starts with a UTF-8 byte order mark (skipped; byte offsets
    /// still count it).
    pub bom: bool,
    /// Every key/value pair, in file order, duplicates included (Java keeps
    /// the last one).
    pub entries: Vec<Entry>,
}

impl Document {
    /// The effective entry for `key`: the last one, as in Java.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.key == key)
    }
}

/// One key/value pair. `Debug` shows no value: it may be a secret.
#[non_exhaustive]
pub struct Entry {
    /// The key, escapes resolved.
    pub key: String,
    /// The value, escapes resolved; zeroed when dropped.
    pub value: Zeroizing<String>,
    /// The 1-based line where the key starts.
    pub line: usize,
    /// The bytes of the raw value in the input: from its first byte to the
    /// end of the last line that holds any of it (a continuation backslash
    /// there included; line terminators and any following lines excluded).
    /// Replacing this range by a value text without escapes or line breaks
    /// changes this value and nothing else. An empty value has an empty
    /// span at the end of its last line.
    pub value_span: Range<usize>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("line", &self.line)
            .field("value_span", &self.value_span)
            .finish_non_exhaustive()
    }
}

/// A syntax error: the only one Java's reader has, a malformed `\uXXXX`.
/// It never holds any text of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Error {
    /// The 1-based line of the bad escape.
    pub line: usize,
    /// What is wrong, in fixed words.
    pub reason: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for Error {}

/// Parses a whole file (see the crate documentation for the rules).
pub fn parse(input: &[u8]) -> Result<Document, Error> {
    let bom = input.starts_with(BOM);
    let encoding = Encoding::detect(input);
    let lines = LineIndex::new(input);
    let mut reader = Reader {
        input,
        off: if bom { BOM.len() } else { 0 },
    };
    // Never reallocated (a logical line is at most the input), so no stray
    // copy of a secret is left behind; zeroed when dropped.
    let mut buf = Zeroizing::new(Vec::with_capacity(input.len()));
    let mut pos = Vec::new();
    let mut entries = Vec::new();
    while let Some(last) = reader.read_line(&mut buf, &mut pos) {
        entries.push(entry(input, encoding, &lines, &buf, &pos, last)?);
    }
    Ok(Document {
        encoding,
        bom,
        entries,
    })
}

/// Java's whitespace in `.properties`: space, tab, form feed.
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\x0c')
}

/// Java's `Properties.LineReader`, on bytes.
struct Reader<'a> {
    input: &'a [u8],
    off: usize,
}

impl Reader<'_> {
    /// Reads the next logical line into `buf` (continuations joined, the
    /// continuation backslashes and the leading whitespace of each natural
    /// line dropped), with the input offset of each byte in `pos`. Returns
    /// the offset of the last byte read into the line (kept or dropped), or
    /// `None` at the end of the input.
    ///
    /// Like Java, a line that held only a continuation backslash right
    /// before the end of the file is an empty line (key `""`, value `""`).
    fn read_line(&mut self, buf: &mut Vec<u8>, pos: &mut Vec<usize>) -> Option<usize> {
        buf.clear();
        pos.clear();
        let input = self.input;
        let mut skip_ws = true;
        let mut appended_line_begin = false;
        let mut preceding_backslash = false;
        let mut skip_lf = false;
        let mut last = None;
        loop {
            let Some(&c) = input.get(self.off) else {
                if buf.is_empty() {
                    return None;
                }
                if preceding_backslash {
                    buf.pop();
                    pos.pop();
                }
                return last;
            };
            self.off += 1;
            if skip_lf {
                skip_lf = false;
                if c == b'\n' {
                    continue;
                }
            }
            if skip_ws {
                if is_ws(c) || (!appended_line_begin && (c == b'\r' || c == b'\n')) {
                    continue;
                }
                skip_ws = false;
                appended_line_begin = false;
            }
            if buf.is_empty() && (c == b'#' || c == b'!') {
                // A comment: skip to the end of the natural line.
                while let Some(&b) = input.get(self.off) {
                    self.off += 1;
                    if b == b'\r' || b == b'\n' {
                        break;
                    }
                }
                skip_ws = true;
                continue;
            }
            if c != b'\n' && c != b'\r' {
                buf.push(c);
                pos.push(self.off - 1);
                last = Some(self.off - 1);
                preceding_backslash = c == b'\\' && !preceding_backslash;
                continue;
            }
            // End of a natural line.
            if buf.is_empty() {
                skip_ws = true;
                continue;
            }
            if self.off >= input.len() || !preceding_backslash {
                if preceding_backslash {
                    buf.pop();
                    pos.pop();
                }
                return last;
            }
            // A continuation: the backslash is not part of the line.
            buf.pop();
            pos.pop();
            skip_ws = true;
            appended_line_begin = true;
            preceding_backslash = false;
            skip_lf = c == b'\r';
        }
    }
}

/// Splits a logical line into key and value (Java's `Properties.load0`) and
/// decodes both (`loadConvert`).
fn entry(
    input: &[u8],
    encoding: Encoding,
    lines: &LineIndex,
    buf: &[u8],
    pos: &[usize],
    last: usize,
) -> Result<Entry, Error> {
    let limit = buf.len();
    let mut key_len = 0;
    let mut value_start = limit;
    let mut has_sep = false;
    let mut preceding_backslash = false;
    while key_len < limit {
        let c = buf[key_len];
        if (c == b'=' || c == b':') && !preceding_backslash {
            value_start = key_len + 1;
            has_sep = true;
            break;
        }
        if is_ws(c) && !preceding_backslash {
            value_start = key_len + 1;
            break;
        }
        preceding_backslash = c == b'\\' && !preceding_backslash;
        key_len += 1;
    }
    while value_start < limit {
        let c = buf[value_start];
        if !is_ws(c) {
            if !has_sep && (c == b'=' || c == b':') {
                has_sep = true;
            } else {
                break;
            }
        }
        value_start += 1;
    }
    let bad_escape = |at: usize| Error {
        line: lines.line_of(pos[at]),
        reason: "malformed \\uXXXX escape",
    };
    let mut key = String::with_capacity(2 * key_len);
    convert(&buf[..key_len], encoding, &mut key).map_err(bad_escape)?;
    let raw_value = &buf[value_start..];
    let mut value = Zeroizing::new(String::with_capacity(2 * raw_value.len()));
    convert(raw_value, encoding, &mut value).map_err(|at| bad_escape(value_start + at))?;

    let end = natural_line_end(input, pos.last().copied().unwrap_or(last));
    let start = pos.get(value_start).copied().unwrap_or(end);
    Ok(Entry {
        key,
        value,
        line: lines.line_of(pos.first().copied().unwrap_or(last)),
        value_span: start..end,
    })
}

/// The end of the natural line holding byte `at` (before its terminator).
fn natural_line_end(input: &[u8], at: usize) -> usize {
    input[at..]
        .iter()
        .position(|&c| c == b'\r' || c == b'\n')
        .map_or(input.len(), |n| at + n)
}

/// Decodes `raw` and resolves its escapes into `out` (which has room for the
/// result, so it does not reallocate). Errors give the offset in `raw` of a
/// malformed `\uXXXX`.
fn convert(raw: &[u8], encoding: Encoding, out: &mut String) -> Result<(), usize> {
    match (encoding, std::str::from_utf8(raw)) {
        (Encoding::Utf8, Ok(text)) => unescape(text.char_indices(), out),
        // Latin-1, or (never, as the whole file was checked) invalid UTF-8.
        _ => unescape(raw.iter().map(|&b| char::from(b)).enumerate(), out),
    }
}

fn unescape(mut chars: impl Iterator<Item = (usize, char)>, out: &mut String) -> Result<(), usize> {
    // A high surrogate waiting for its low half.
    let mut high: Option<u32> = None;
    let flush = |high: &mut Option<u32>, out: &mut String| {
        if high.take().is_some() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    };
    while let Some((at, c)) = chars.next() {
        if c != '\\' {
            flush(&mut high, out);
            out.push(c);
            continue;
        }
        // The reader never leaves an unescaped backslash at the end.
        let Some((_, c)) = chars.next() else { break };
        let c = match c {
            'u' => {
                let mut unit = 0;
                for _ in 0..4 {
                    let digit = chars.next().and_then(|(_, h)| h.to_digit(16));
                    unit = (unit << 4) | digit.ok_or(at)?;
                }
                match unit {
                    0xD800..=0xDBFF => {
                        flush(&mut high, out);
                        high = Some(unit);
                        continue;
                    }
                    0xDC00..=0xDFFF => {
                        match high.take() {
                            Some(h) => out.push(
                                char::from_u32(0x10000 + ((h - 0xD800) << 10) + (unit - 0xDC00))
                                    .unwrap_or(char::REPLACEMENT_CHARACTER),
                            ),
                            None => out.push(char::REPLACEMENT_CHARACTER),
                        }
                        continue;
                    }
                    _ => char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER),
                }
            }
            't' => '\t',
            'r' => '\r',
            'n' => '\n',
            'f' => '\x0c',
            other => other,
        };
        flush(&mut high, out);
        out.push(c);
    }
    flush(&mut high, out);
    Ok(())
}

/// Natural line numbers of byte offsets.
struct LineIndex {
    /// Offset of the first byte of each natural line.
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(input: &[u8]) -> Self {
        let mut starts = vec![0];
        let mut i = 0;
        while i < input.len() {
            match input[i] {
                b'\r' if input.get(i + 1) == Some(&b'\n') => {
                    i += 2;
                    starts.push(i);
                }
                b'\r' | b'\n' => {
                    i += 1;
                    starts.push(i);
                }
                _ => i += 1,
            }
        }
        LineIndex { starts }
    }

    /// The 1-based line of byte `off`.
    fn line_of(&self, off: usize) -> usize {
        self.starts.partition_point(|&s| s <= off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &[u8]) -> Vec<(String, String, usize, String)> {
        parse(text)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| {
                let raw = String::from_utf8_lossy(&text[e.value_span.clone()]).into_owned();
                (e.key, e.value.to_string(), e.line, raw)
            })
            .collect()
    }

    #[test]
    fn line_index() {
        let l = LineIndex::new(b"a\r\nb\rc\nd");
        let lines: Vec<_> = (0..8).map(|o| l.line_of(o)).collect();
        assert_eq!(lines, [1, 1, 1, 2, 2, 3, 3, 4]);
    }

    #[test]
    fn spans_and_lines() {
        let v = pairs(b"# c\n\nk = one\\\n    two\\\r\n\tthree\nnext=1\n");
        assert_eq!(v[0].0, "k");
        assert_eq!(v[0].1, "onetwothree");
        assert_eq!(v[0].2, 3);
        assert_eq!(v[0].3, "one\\\n    two\\\r\n\tthree");
        assert_eq!((v[1].2, v[1].3.as_str()), (6, "1"));
        // The value starts on a continuation line.
        let v = pairs(b"k = \\\n   val");
        assert_eq!((v[0].1.as_str(), v[0].3.as_str()), ("val", "val"));
        // The key starts after a line that was only a backslash.
        let v = pairs(b"\\\n  k=v");
        assert_eq!((v[0].0.as_str(), v[0].2), ("k", 2));
        // Empty values: empty span at the end of the line.
        let text = b"a=\nb\nc = \n";
        let doc = parse(text).unwrap();
        let spans: Vec<_> = doc.entries.iter().map(|e| e.value_span.clone()).collect();
        assert_eq!(spans, [2..2, 4..4, 9..9]);
    }

    #[test]
    fn dangling_backslash_at_end_of_file_is_dropped_not_the_line() {
        let v = pairs(b"a=1\nk=abc\\");
        assert_eq!(v.len(), 2);
        assert_eq!((v[1].1.as_str(), v[1].3.as_str()), ("abc", "abc\\"));
        let v = pairs(b"k=abc\\\n  def\\");
        assert_eq!(
            (v[0].1.as_str(), v[0].3.as_str()),
            ("abcdef", "abc\\\n  def\\")
        );
        let v = pairs(b"k=abc\\\n   ");
        assert_eq!((v[0].1.as_str(), v[0].3.as_str()), ("abc", "abc\\"));
    }

    #[test]
    fn continuation_into_an_empty_line_keeps_that_line_out_of_the_span() {
        for (text, next_line) in [
            (&b"k=a\\\n\nb=1\n"[..], 3),
            (b"k=a\\\r\n\r\nb=1", 3),
            (b"k=a\\\n   \nb=1\n", 3),
            (b"k=a\\\n  \\\n\nb=1\n", 4),
        ] {
            let v = pairs(text);
            assert_eq!(v.len(), 2, "{text:?}");
            assert_eq!((v[0].1.as_str(), v[0].3.as_str()), ("a", "a\\"), "{text:?}");
            assert_eq!((v[1].0.as_str(), v[1].2), ("b", next_line), "{text:?}");
        }
    }

    #[test]
    fn bom_is_skipped_and_does_not_decide_the_encoding() {
        let doc = parse(b"\xEF\xBB\xBFk=caf\xe9\n").unwrap();
        assert!(doc.bom);
        assert_eq!(doc.encoding, Encoding::Latin1);
        assert_eq!(doc.entries[0].key, "k");
        assert_eq!(doc.entries[0].value.as_str(), "caf\u{e9}");
        assert_eq!(doc.entries[0].value_span, 5..9);
        let doc = parse("\u{feff}k=caf\u{e9}\n".as_bytes()).unwrap();
        assert_eq!(doc.encoding, Encoding::Utf8);
        assert_eq!(doc.entries[0].value.as_str(), "caf\u{e9}");
        assert_eq!(doc.entries[0].value_span, 5..10);
        // Only at the start.
        let doc = parse(b"a=1\n\xEF\xBB\xBFk=v\n").unwrap();
        assert_eq!(doc.entries[1].key, "\u{feff}k");
    }

    #[test]
    fn latin1_is_iso_8859_1_not_windows_1252() {
        let doc = parse(b"k=\x80\x85\x9f\xa0\xe9\xff\n").unwrap();
        assert_eq!(doc.encoding, Encoding::Latin1);
        assert_eq!(
            doc.entries[0].value.as_str(),
            "\u{80}\u{85}\u{9f}\u{a0}\u{e9}\u{ff}"
        );
        assert_eq!(Encoding::detect(b"\xc3\xa9"), Encoding::Utf8);
        assert_eq!(Encoding::detect(b"\xe9"), Encoding::Latin1);
        assert_eq!(Encoding::detect(b"\xEF\xBB\xBF\xe9"), Encoding::Latin1);
    }

    #[test]
    fn errors_name_the_line_of_the_escape_and_hold_no_text() {
        let e = parse(b"a=1\nk=sec\\\n  ret\\uZZZZ\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.to_string(), "line 3: malformed \\uXXXX escape");
        let e = parse(b"\\uXY=1").unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn debug_shows_no_value() {
        let doc = parse(b"pw=hunter2\n").unwrap();
        let dbg = format!("{doc:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("pw"), "{dbg}");
        assert_eq!(doc.get("pw").unwrap().value.as_str(), "hunter2");
        assert!(doc.get("x").is_none());
    }
}
