//! The SMTP server codec (relay/src/codec/) fed arbitrary client bytes,
//! through its reference server, with settings and chunk sizes from the
//! input: no panic; every reply line well formed; at most two replies per
//! input line (no loop, no amplification); nothing stored with a bare LF
//! or CR, over the size or with a line over the limit; and, unless
//! STARTTLS or a refused DATA made the cut of the reads matter, the same
//! replies and messages whether the input comes whole or in chunks, with
//! or without line reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_relay::codec::suite::{Reference, codec_config};

const MAX_MESSAGE: usize = 2048;

fn session(bytes: &[u8], chunk: usize, flags: u8, report_lines: bool) -> Reference {
    let mut config = codec_config();
    config.bare_lf_ends_line = flags & 1 != 0;
    config.report_lines = report_lines;
    config.require_auth = flags & 4 != 0;
    config.require_tls_for_auth = flags & 8 != 0;
    config.require_tls_for_mail = flags & 16 != 0;
    config.extensions.dsn = flags & 32 != 0;
    config.extensions.smtputf8 = flags & 32 != 0;
    config.extensions.auth = (flags & 64 != 0).then(|| "PLAIN LOGIN".to_owned());
    config.max_line = 16 + usize::from(flags >> 4) * 40;
    config.max_data_line = 32 + usize::from(flags & 15) * 20;
    config.max_message_bytes = MAX_MESSAGE;
    config.max_errors = 1 + usize::from(flags % 23);
    config.max_commands = 5 + usize::from(flags % 61);
    let mut server = Reference::new(config);
    for part in bytes.chunks(chunk) {
        server.receive(part);
        if server.closed() {
            break;
        }
    }
    server
}

fn check_replies(out: &[u8]) -> usize {
    let mut replies = 0;
    for line in out.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\r\n").expect("reply lines end in CRLF");
        assert!(body.len() >= 3 && body[..3].iter().all(u8::is_ascii_digit), "{body:?}");
        assert!(matches!(body.get(3), None | Some(b' ' | b'-')), "{body:?}");
        assert!(body.iter().all(|&b| (0x20..0x7f).contains(&b)), "{body:?}");
        if body.get(3) != Some(&b'-') {
            replies += 1;
        }
    }
    replies
}

fn check_stored(server: &Reference, max_line: usize) {
    for data in server.stored() {
        assert!(data.len() <= MAX_MESSAGE);
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && data[i - 1] == b'\r', "bare LF stored");
            }
            if b == b'\r' {
                assert_eq!(data.get(i + 1), Some(&b'\n'), "bare CR stored");
            }
        }
        for line in data.split_inclusive(|&b| b == b'\n') {
            assert!(line.len() <= max_line, "a line over the limit stored");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&seed, bytes)) = rest.split_first() else {
        return;
    };
    let chunk = usize::from(seed) + 1;
    let mut whole = session(bytes, usize::MAX, flags, false);
    let mut chunked = session(bytes, chunk, flags, flags & 2 != 0);
    let max_data_line = whole.codec().config().max_data_line;
    let (out_whole, out_chunked) = (whole.take_output(), chunked.take_output());
    let lines = bytes.iter().filter(|&&b| b == b'\n').count();
    for out in [&out_whole, &out_chunked] {
        let replies = check_replies(out);
        assert!(replies <= 2 * lines + 1, "{replies} replies to {lines} lines");
    }
    check_stored(&whole, max_data_line);
    check_stored(&chunked, max_data_line);
    if !whole.chunking_matters() && !chunked.chunking_matters() {
        assert_eq!(out_whole, out_chunked, "the cut of the reads changed the replies");
        assert_eq!(whole.stored(), chunked.stored());
    }
});
