//! Byte-exact view of a Java `.properties` file.
//!
//! The structure (natural lines, logical lines joined by `\` continuations,
//! comments, the key/separator/value split) is found on the raw bytes: every
//! structural character is ASCII, and neither UTF-8 nor windows-1252 uses an
//! ASCII byte inside a multi-byte character, so byte offsets are exact in
//! both encodings. Keys and values are *decoded* by the `java-properties`
//! crate, and the value span found here is cross-checked against its
//! decoding before anything is edited.

use std::path::Path;

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};
use java_properties::{LineContent, PropertiesIter};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The encoding mailgate reads a properties file in: UTF-8 when the bytes
/// are valid UTF-8, else windows-1252 (the Latin-1 superset Java's
/// `Properties.load(InputStream)` family uses).
pub fn detect_encoding(bytes: &[u8]) -> &'static Encoding {
    if std::str::from_utf8(bytes).is_ok() {
        UTF_8
    } else {
        WINDOWS_1252
    }
}

/// One key/value logical line.
pub(crate) struct Entry {
    /// 1-based number of the natural line where the logical line starts.
    pub line: usize,
    /// The key, decoded.
    pub key: String,
    /// The value, decoded (zeroed on drop: it may be a secret).
    pub value: Zeroizing<String>,
    /// Byte range of the raw value in the file: from its first character to
    /// the end of the logical line, line terminator excluded.
    pub span: std::ops::Range<usize>,
}

/// A natural line: `start..end` is its content, without the terminator
/// (`\n`, `\r` or `\r\n`).
#[derive(Clone, Copy)]
struct Natural {
    start: usize,
    end: usize,
}

fn natural_lines(b: &[u8]) -> Vec<Natural> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\n' => {
                out.push(Natural { start, end: i });
                i += 1;
                start = i;
            }
            b'\r' => {
                let next = if b.get(i + 1) == Some(&b'\n') {
                    i + 2
                } else {
                    i + 1
                };
                out.push(Natural { start, end: i });
                i = next;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < b.len() {
        out.push(Natural {
            start,
            end: b.len(),
        });
    }
    out
}

/// Java's whitespace in `.properties`: space, tab, form feed.
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\x0c')
}

fn ends_with_odd_backslashes(s: &[u8]) -> bool {
    s.iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 1
}

fn is_comment(s: &[u8]) -> bool {
    matches!(s.iter().find(|&&c| !is_ws(c)), Some(b'#' | b'!'))
}

/// Parses the file's key/value lines, in file order.
pub(crate) fn entries(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>> {
    let enc = detect_encoding(bytes);
    let lines = natural_lines(bytes);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let first = i;
        let content = &bytes[lines[i].start..lines[i].end];
        if is_comment(content) {
            i += 1;
            continue;
        }
        while ends_with_odd_backslashes(&bytes[lines[i].start..lines[i].end]) && i + 1 < lines.len()
        {
            i += 1;
        }
        let last = i;
        i += 1;
        let group = &lines[first..=last];
        if group.len() == 1 && content.iter().all(|&c| is_ws(c)) {
            continue; // blank line
        }
        if let Some(entry) = entry(path, bytes, enc, group, first + 1)? {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Decodes one logical line. `None` when it holds no key/value pair.
fn entry(
    path: &Path,
    bytes: &[u8],
    enc: &'static Encoding,
    group: &[Natural],
    line: usize,
) -> Result<Option<Entry>> {
    let parse_err = |reason| Error::Parse {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let last = group[group.len() - 1];
    let raw = &bytes[group[0].start..last.end];
    let Some((key, value)) = decode_one(raw, enc).map_err(parse_err)? else {
        return Ok(None);
    };

    // Join the natural lines as Java does (drop the continuation backslash,
    // skip the next line's leading whitespace), remembering where each
    // joined byte came from.
    let mut joined = Vec::new();
    let mut origin = Vec::new();
    for (n, nat) in group.iter().enumerate() {
        let mut s = nat.start;
        let mut e = nat.end;
        if n > 0 {
            while s < e && is_ws(bytes[s]) {
                s += 1;
            }
        }
        // The continuation backslash; on the file's last line, a dangling one
        // (Java drops it).
        if n + 1 < group.len() || ends_with_odd_backslashes(&bytes[s..e]) {
            e -= 1;
        }
        joined.extend_from_slice(&bytes[s..e]);
        origin.extend(s..e);
    }

    // Key, then separator: Java's rules.
    let mut p = 0;
    while p < joined.len() && is_ws(joined[p]) {
        p += 1;
    }
    while p < joined.len() {
        match joined[p] {
            b'\\' => p += 2,
            b'=' | b':' => break,
            c if is_ws(c) => break,
            _ => p += 1,
        }
    }
    let p = p.min(joined.len());
    let mut v = p;
    while v < joined.len() && is_ws(joined[v]) {
        v += 1;
    }
    if v < joined.len() && matches!(joined[v], b'=' | b':') {
        v += 1;
        while v < joined.len() && is_ws(joined[v]) {
            v += 1;
        }
    }
    let end = last.end;
    let start = if v < joined.len() { origin[v] } else { end };

    // Cross-check: the span alone must decode to the same value, so that
    // what is encrypted is exactly what is replaced.
    let mut probe = Zeroizing::new(b"k=".to_vec());
    probe.extend_from_slice(&bytes[start..end]);
    let check = decode_one(&probe, enc).map_err(parse_err)?;
    let same = match &check {
        Some((_, v2)) => v2.as_str() == value.as_str(),
        None => value.is_empty(),
    };
    if !same {
        return Err(parse_err(
            "cannot locate the value of this line exactly (unusual whitespace or escapes); \
             edit it by hand",
        ));
    }
    Ok(Some(Entry {
        line,
        key,
        value,
        span: start..end,
    }))
}

/// Decodes one logical line with the `java-properties` crate.
fn decode_one(
    raw: &[u8],
    enc: &'static Encoding,
) -> std::result::Result<Option<(String, Zeroizing<String>)>, &'static str> {
    let mut found = None;
    for item in PropertiesIter::new_with_encoding(terminated(raw).as_slice(), enc) {
        // The crate's messages carry no values, but keep to fixed words.
        let item = item.map_err(|_| "invalid escape sequence (e.g. a malformed \\uXXXX)")?;
        if let LineContent::KVPair(k, v) = item.consume_content() {
            if found.is_some() {
                return Err("line structure not understood");
            }
            found = Some((k, Zeroizing::new(v)));
        }
    }
    Ok(found)
}

/// The bytes plus a final line feed. Java reads a last line that ends in a
/// continuation backslash at end of file; `java-properties` drops it unless
/// an (empty) line follows. An extra empty line changes nothing else.
fn terminated(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(Vec::with_capacity(bytes.len() + 1));
    v.extend_from_slice(bytes);
    v.push(b'\n');
    v
}

/// Every line of the file as the `java-properties` crate reads it (comments
/// and pairs), for verifying an edit.
pub(crate) fn decode_all(bytes: &[u8]) -> std::result::Result<Vec<LineContent>, ()> {
    PropertiesIter::new_with_encoding(terminated(bytes).as_slice(), detect_encoding(bytes))
        .map(|l| l.map(|l| l.consume_content()).map_err(|_| ()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Vec<(usize, String, String, String)> {
        entries(Path::new("t.properties"), text)
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.line,
                    e.key,
                    e.value.to_string(),
                    String::from_utf8_lossy(&text[e.span]).into_owned(),
                )
            })
            .collect()
    }

    fn one(text: &str) -> (String, String, String) {
        let mut v = parse(text.as_bytes());
        assert_eq!(v.len(), 1, "{text:?}");
        let (_, k, val, raw) = v.remove(0);
        (k, val, raw)
    }

    #[test]
    fn separators() {
        for (t, raw) in [
            ("k=v", "v"),
            ("k = v", "v"),
            ("k:v", "v"),
            ("  k :\t v", "v"),
            ("k v", "v"),
            ("k\t\tv", "v"),
            ("k \t= v w ", "v w "),
            ("k=:v", ":v"),
            ("k==v", "=v"),
        ] {
            let (k, _, r) = one(t);
            assert_eq!(k, "k", "{t:?}");
            assert_eq!(r, raw, "{t:?}");
        }
    }

    #[test]
    fn escapes_in_key_and_value() {
        let (k, v, r) = one(r"a\=b\:c\ d = x\=y\:z\ ");
        assert_eq!(k, "a=b:c d");
        assert_eq!(v, "x=y:z ");
        assert_eq!(r, r"x\=y\:z\ ");
        let (_, v, _) = one(r"k=caf\u00e9\\\t");
        assert_eq!(v, "café\\\t");
    }

    #[test]
    fn continuations() {
        let t = "k = one\\\n    two\\\r\n\tthree\nnext=1\n";
        let v = parse(t.as_bytes());
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].1, "k");
        assert_eq!(v[0].2, "onetwothree");
        assert_eq!(v[0].3, "one\\\n    two\\\r\n\tthree");
        assert_eq!((v[1].0, v[1].1.as_str()), (4, "next"));
        // Value starting on the continuation line.
        let (_, v, r) = one("k = \\\n   val");
        assert_eq!(v, "val");
        assert_eq!(r, "val");
        // Continuation inside the key.
        let (k, v, r) = one("ke\\\n  y=val");
        assert_eq!((k.as_str(), v.as_str(), r.as_str()), ("key", "val", "val"));
        // An even number of backslashes is no continuation.
        let v = parse(b"a=x\\\\\nb=y");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].2, "x\\");
    }

    #[test]
    fn comments_and_blanks() {
        let t = "# c \\\n! d\n   # e\n\n \t \nk=v\n#k=w\n";
        let v = parse(t.as_bytes());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0, 6);
        // A '#' on a continuation line is value text.
        let (_, v, _) = one("k=a\\\n#b");
        assert_eq!(v, "a#b");
    }

    #[test]
    fn empty_values_and_bare_keys() {
        let v = parse(b"a=\nb\nc = \n");
        assert_eq!(v.len(), 3);
        for e in &v {
            assert_eq!(e.2, "");
            assert_eq!(e.3, "");
        }
    }

    #[test]
    fn dangling_backslash_at_end_of_file() {
        let v = parse(b"a=1\nk=abc\\");
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[1].1.as_str(), v[1].2.as_str(), v[1].3.as_str()),
            ("k", "abc", "abc\\")
        );
        let v = parse(b"k=abc\\\n  def\\");
        assert_eq!(
            (v[0].2.as_str(), v[0].3.as_str()),
            ("abcdef", "abc\\\n  def\\")
        );
    }

    #[test]
    fn utf8_bom() {
        let v = parse("\u{feff}k=v\n".as_bytes());
        assert_eq!(
            (v[0].1.as_str(), v[0].2.as_str(), v[0].3.as_str()),
            ("k", "v", "v")
        );
    }

    #[test]
    fn line_endings() {
        let v = parse(b"a=1\r\nb=2\rc=3\nd=4");
        let keys: Vec<_> = v
            .iter()
            .map(|e| (e.0, e.1.as_str(), e.3.as_str()))
            .collect();
        assert_eq!(
            keys,
            [(1, "a", "1"), (2, "b", "2"), (3, "c", "3"), (4, "d", "4")]
        );
    }

    #[test]
    fn encodings() {
        // windows-1252: 0xE9 is é, 0x80 is €.
        let v = parse(b"k=caf\xe9 \x80\n");
        assert_eq!(v[0].2, "café €");
        // UTF-8.
        let v = parse("k=café €\n".as_bytes());
        assert_eq!(v[0].2, "café €");
        assert_eq!(detect_encoding(b"\xc3\xa9"), UTF_8);
        assert_eq!(detect_encoding(b"\xe9"), WINDOWS_1252);
    }

    #[test]
    fn bad_escape_is_a_parse_error_without_value() {
        let e = entries(Path::new("f"), b"x=1\nk=se\\uZZZZcret\n")
            .err()
            .unwrap();
        assert!(matches!(e, Error::Parse { line: 2, .. }));
        assert!(!e.to_string().contains("cret"));
    }

    #[test]
    fn unusual_whitespace_refused() {
        // U+00A0 leading a continuation line: java-properties trims it, Java
        // does not; refuse rather than guess.
        let e = entries(Path::new("f"), "k=\\\n\u{a0}v\n".as_bytes())
            .err()
            .unwrap();
        assert!(matches!(e, Error::Parse { line: 1, .. }), "{e}");
    }
}
