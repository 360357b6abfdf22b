//! Keys, values, line numbers and value spans: the cases of the reader that
//! `mailgate-secrets` used to have, kept with their assertions (two changed,
//! see `encodings` and `no_break_space_is_not_whitespace`).

use mailgate_properties::{Encoding, parse};

/// (line, key, value, raw value span text) of every entry.
fn parse_all(text: &[u8]) -> Vec<(usize, String, String, String)> {
    parse(text)
        .unwrap()
        .entries
        .into_iter()
        .map(|e| {
            (
                e.line,
                e.key,
                e.value.to_string(),
                String::from_utf8_lossy(&text[e.value_span]).into_owned(),
            )
        })
        .collect()
}

fn one(text: &str) -> (String, String, String) {
    let mut v = parse_all(text.as_bytes());
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
    let v = parse_all(t.as_bytes());
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
    let v = parse_all(b"a=x\\\\\nb=y");
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].2, "x\\");
}

#[test]
fn comments_and_blanks() {
    let t = "# c \\\n! d\n   # e\n\n \t \nk=v\n#k=w\n";
    let v = parse_all(t.as_bytes());
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, 6);
    // A '#' on a continuation line is value text.
    let (_, v, _) = one("k=a\\\n#b");
    assert_eq!(v, "a#b");
}

#[test]
fn empty_values_and_bare_keys() {
    let v = parse_all(b"a=\nb\nc = \n");
    assert_eq!(v.len(), 3);
    for e in &v {
        assert_eq!(e.2, "");
        assert_eq!(e.3, "");
    }
}

#[test]
fn dangling_backslash_at_end_of_file() {
    let v = parse_all(b"a=1\nk=abc\\");
    assert_eq!(v.len(), 2);
    assert_eq!(
        (v[1].1.as_str(), v[1].2.as_str(), v[1].3.as_str()),
        ("k", "abc", "abc\\")
    );
    let v = parse_all(b"k=abc\\\n  def\\");
    assert_eq!(
        (v[0].2.as_str(), v[0].3.as_str()),
        ("abcdef", "abc\\\n  def\\")
    );
}

#[test]
fn utf8_bom() {
    let v = parse_all("\u{feff}k=v\n".as_bytes());
    assert_eq!(
        (v[0].1.as_str(), v[0].2.as_str(), v[0].3.as_str()),
        ("k", "v", "v")
    );
}

#[test]
fn line_endings() {
    let v = parse_all(b"a=1\r\nb=2\rc=3\nd=4");
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
    // ISO-8859-1, as Java reads it: 0xE9 is é, 0x80 is U+0080 (it was the
    // windows-1252 euro sign here before; Java never reads it so).
    let v = parse_all(b"k=caf\xe9 \x80\n");
    assert_eq!(v[0].2, "café \u{80}");
    // UTF-8.
    let v = parse_all("k=café €\n".as_bytes());
    assert_eq!(v[0].2, "café €");
    assert_eq!(Encoding::detect(b"\xc3\xa9"), Encoding::Utf8);
    assert_eq!(Encoding::detect(b"\xe9"), Encoding::Latin1);
}

#[test]
fn bad_escape_is_an_error_without_value() {
    let e = parse(b"x=1\nk=se\\uZZZZcret\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(!e.to_string().contains("cret"));
}

#[test]
fn no_break_space_is_not_whitespace() {
    // U+00A0 leading a continuation line: Java keeps it (only space, tab and
    // form feed are whitespace). The old reader could not tell and refused
    // the line; this one reads it as Java does.
    let (_, v, r) = one("k=\\\n\u{a0}v\n");
    assert_eq!(v, "\u{a0}v");
    assert_eq!(r, "\u{a0}v");
}
