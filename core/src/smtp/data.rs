//! The message as it goes on the wire after DATA (RFC 5321 §4.5.2).

/// Encodes `message` for the DATA phase in one pass and one allocation:
/// every line ends in CRLF (a bare LF or a lone CR becomes CRLF, so nothing
/// can end the data early on a lenient server: the SMTP smuggling pattern),
/// a line that starts with `.` gets one more, a last line without an end
/// gets one, and the end-of-data line `.` follows. A message that already
/// ends in CRLF gains no blank line.
pub fn encode_data(message: &[u8]) -> Vec<u8> {
    // Dot-stuffing and line endings rarely add more than a few bytes per KB.
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut line_start = true;
    let mut i = 0;
    while i < message.len() {
        if line_start && message[i] == b'.' {
            out.push(b'.');
        }
        let run_end = message[i..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .map_or(message.len(), |n| i + n);
        out.extend_from_slice(&message[i..run_end]);
        if run_end == message.len() {
            line_start = false;
            break;
        }
        // CRLF, a lone CR or a bare LF: all end the line as CRLF.
        out.extend_from_slice(b"\r\n");
        i = if message[run_end] == b'\r' && message.get(run_end + 1) == Some(&b'\n') {
            run_end + 2
        } else {
            run_end + 1
        };
        line_start = true;
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::encode_data;

    fn enc(s: &str) -> String {
        String::from_utf8(encode_data(s.as_bytes())).unwrap()
    }

    #[test]
    fn dots_line_ends_and_terminator() {
        assert_eq!(enc(""), ".\r\n");
        assert_eq!(enc("a"), "a\r\n.\r\n");
        assert_eq!(enc("a\r\n"), "a\r\n.\r\n");
        assert_eq!(enc("a\r\n\r\n"), "a\r\n\r\n.\r\n");
        assert_eq!(
            enc(".x\r\n.\r\ny.z\r\n.."),
            "..x\r\n..\r\ny.z\r\n...\r\n.\r\n"
        );
        assert_eq!(enc("a\n.b\n"), "a\r\n..b\r\n.\r\n");
        assert_eq!(enc("a\r.\rb"), "a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(enc("a\n\n.\n"), "a\r\n\r\n..\r\n.\r\n");
        assert_eq!(enc("\r\n.\r\n"), "\r\n..\r\n.\r\n");
    }

    #[test]
    fn no_bare_line_ends_and_no_early_end_whatever_the_input() {
        let alphabet = [b'a', b'.', b'\r', b'\n'];
        // Every string of length up to 7 over the alphabet.
        for len in 0..=7u32 {
            for n in 0..4usize.pow(len) {
                let input: Vec<u8> = (0..len).map(|k| alphabet[n / 4usize.pow(k) % 4]).collect();
                let out = encode_data(&input);
                let body = &out[..out.len() - 3];
                assert!(out.ends_with(b".\r\n"));
                for (j, &b) in out.iter().enumerate() {
                    if b == b'\n' {
                        assert_eq!(out.get(j.wrapping_sub(1)), Some(&b'\r'), "{input:?}");
                    }
                    if b == b'\r' {
                        assert_eq!(out.get(j + 1), Some(&b'\n'), "{input:?}");
                    }
                }
                // The end-of-data line appears only at the very end.
                let wire = [b"\r\n".as_slice(), &out].concat();
                let first_end = wire.windows(5).position(|w| w == b"\r\n.\r\n");
                assert_eq!(first_end, Some(wire.len() - 5), "{input:?}");
                // Undoing the stuffing gives the input with CRLF line ends.
                let mut undone = Vec::new();
                for line in body.split(|&b| b == b'\n') {
                    let line = line.strip_prefix(b".").unwrap_or(line);
                    undone.extend_from_slice(line);
                    undone.push(b'\n');
                }
                undone.pop();
                let normalized: Vec<u8> = String::from_utf8(input.clone())
                    .unwrap()
                    .replace("\r\n", "\n")
                    .replace('\r', "\n")
                    .replace('\n', "\r\n")
                    .into_bytes();
                let expected = if normalized.is_empty() || normalized.ends_with(b"\r\n") {
                    normalized
                } else {
                    [normalized, b"\r\n".to_vec()].concat()
                };
                assert_eq!(undone, expected, "{input:?}");
            }
        }
    }
}
