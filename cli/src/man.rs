//! `mailgate man`: one manual page per command, generated from the same
//! clap definitions as `--help` (clap_mangen renders name, synopsis,
//! description and options), with the sections clap knows nothing of:
//! SUBCOMMANDS that point at pages that exist, EXIT STATUS as a list,
//! ENVIRONMENT, FILES and SEE ALSO.

use std::io::Write as _;
use std::path::Path;

use clap::CommandFactory as _;
use roff::{Roff, bold, roman};

use crate::{Cli, Failure};

/// Commands whose page is in section 8 (system administration), like
/// sendmail(8) and the daemons.
const SECTION_8: &[&str] = &["mailgate-sendmail", "mailgate-relay", "mailgate-deliver"];

/// One page: its file name (`mailgate-send.1`) and its roff text.
pub(crate) struct Page {
    pub(crate) file: String,
    pub(crate) roff: Vec<u8>,
}

/// Every page: `mailgate(1)` and one per (sub)command, hidden ones aside.
pub(crate) fn pages() -> Vec<Page> {
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut names = Vec::new();
    collect_names(&root, &mut names);
    let mut out = Vec::new();
    render_all(&root, &names, &mut out);
    out
}

/// `mailgate man`: the main page on stdout, or every page into `dir`.
pub(crate) fn man(dir: Option<&Path>) -> Result<(), Failure> {
    let pages = pages();
    let Some(dir) = dir else {
        let main = pages
            .into_iter()
            .find(|p| p.file == "mailgate.1")
            .map(|p| p.roff)
            .unwrap_or_default();
        let mut out = std::io::stdout().lock();
        return out
            .write_all(&main)
            .and_then(|()| out.flush())
            .map_err(Failure::Stdout);
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        Failure::exit(
            73,
            "cant_create",
            format!("mailgate man: cannot create {}: {e}", dir.display()),
        )
    })?;
    for page in &pages {
        let path = dir.join(&page.file);
        std::fs::write(&path, &page.roff).map_err(|e| {
            Failure::exit(
                73,
                "cant_create",
                format!("mailgate man: cannot write {}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}

fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned()
}

fn section_of(name: &str) -> &'static str {
    if SECTION_8.contains(&name) { "8" } else { "1" }
}

fn visible(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

fn collect_names(cmd: &clap::Command, out: &mut Vec<String>) {
    out.push(page_name(cmd));
    for sub in visible(cmd) {
        collect_names(sub, out);
    }
}

fn render_all(cmd: &clap::Command, names: &[String], out: &mut Vec<Page>) {
    out.push(render(cmd, names));
    for sub in visible(cmd) {
        render_all(sub, names, out);
    }
}

fn render(cmd: &clap::Command, names: &[String]) -> Page {
    let name = page_name(cmd);
    let section = section_of(&name);
    // The after-help text is rendered below as EXIT STATUS and NOTES.
    let plain = cmd.clone().after_help("").after_long_help("");
    let man = clap_mangen::Man::new(plain)
        .section(section)
        .source(format!("mailgate {}", env!("CARGO_PKG_VERSION")))
        .manual("mailgate manual");
    let mut text = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render_title(&mut text);
    let _ = man.render_name_section(&mut text);
    let _ = man.render_synopsis_section(&mut text);
    let _ = man.render_description_section(&mut text);
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        let _ = man.render_options_section(&mut text);
    }
    let mut roff = Roff::new();
    let subs: Vec<&clap::Command> = visible(cmd).collect();
    if !subs.is_empty() {
        roff.control("SH", ["SUBCOMMANDS"]);
        for sub in subs {
            let sub_name = page_name(sub);
            roff.control("TP", [] as [&str; 0]);
            roff.text([
                bold(sub_name.as_str()),
                roman(format!("({})", section_of(&sub_name))),
            ]);
            roff.text([roman(
                sub.get_about().map(|a| a.to_string()).unwrap_or_default(),
            )]);
        }
    }
    let after = cmd
        .get_after_help()
        .or(cmd.get_after_long_help())
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (codes, notes) = exit_status(&after);
    if !codes.is_empty() {
        roff.control("SH", ["EXIT STATUS"]);
        for (code, meaning) in codes {
            roff.control("TP", [] as [&str; 0]);
            roff.text([bold(code)]);
            roff.text([roman(meaning)]);
        }
    }
    if !notes.is_empty() {
        roff.control("SH", ["NOTES"]);
        for paragraph in notes.split("\n\n") {
            roff.control("PP", [] as [&str; 0]);
            roff.text([roman(paragraph.replace('\n', " "))]);
        }
    }
    environment(&mut roff);
    files(&mut roff, &name);
    roff.control("SH", ["SEE ALSO"]);
    let related: Vec<String> = names
        .iter()
        .filter(|n| {
            **n != name
                && (n.starts_with(&format!("{name}-")) || name.starts_with(&format!("{n}-")))
        })
        .map(|n| format!("{n}({})", section_of(n)))
        .collect();
    let mut see = related;
    see.push("sendmail(8)".into());
    roff.text([roman(see.join(", "))]);
    text.extend_from_slice(roff.render().as_bytes());
    Page {
        file: format!("{name}.{section}"),
        roff: text,
    }
}

/// `Exit status: 0 ok; 64 usage; ... . More text.` as its (code, meaning)
/// pairs and the text after the list.
fn exit_status(after: &str) -> (Vec<(String, String)>, String) {
    if let Some(table) = after.trim().strip_prefix("Exit status (sysexits):") {
        return sysexits_table(table);
    }
    let Some(rest) = after.trim().strip_prefix("Exit status: ") else {
        return (Vec::new(), after.trim().to_owned());
    };
    // The list ends at the first ". " that starts a new sentence outside
    // parentheses.
    let mut depth = 0i32;
    let mut end = rest.len();
    let bytes = rest.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'.' if depth == 0
                && bytes.get(i + 1) == Some(&b' ')
                && bytes.get(i + 2).is_some_and(u8::is_ascii_uppercase) =>
            {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let list = rest[..end].trim_end_matches('.');
    let notes = rest.get(end + 1..).unwrap_or_default().trim().to_owned();
    let codes = list
        .split("; ")
        .filter_map(|item| {
            let (code, meaning) = item.trim().split_once(' ')?;
            code.chars()
                .all(|c| c.is_ascii_digit())
                .then(|| (code.to_owned(), meaning.to_owned()))
        })
        .collect();
    (codes, notes)
}

/// The main page's table: `  CODE  meaning` lines, then notes.
fn sysexits_table(table: &str) -> (Vec<(String, String)>, String) {
    let mut codes = Vec::new();
    let mut notes = Vec::new();
    for line in table.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once(char::is_whitespace) {
            Some((code, meaning)) if code.chars().all(|c| c.is_ascii_digit()) => {
                codes.push((code.to_owned(), meaning.trim().to_owned()));
            }
            _ => notes.push(line),
        }
    }
    (codes, notes.join(" "))
}

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    let entries: [(&str, &str); 4] = [
        (
            "MAILGATE_CONFIG_DIR",
            "The config folder when --config-dir (sendmail: -C) is not given; else ./config, or /etc/mailgate for the binary called sendmail.",
        ),
        (
            "MKSIS_*, MAILGATE_*",
            "Override a property: its key upper-cased with dots as underscores (MKSIS_SECURITY_SMTP_OAUTH_CLIENTSECRET for mksis.security.smtp.oauth.clientSecret). mailgate check shows where each value came from.",
        ),
        (
            "RUST_LOG",
            "Log filter for other crates' messages; -v and -q set mailgate's own level.",
        ),
        (
            "SSL_CERT_FILE, SSL_CERT_DIR",
            "Extra CA certificates for TLS, besides the system's and mksis.smtp.ssl.caFile.",
        ),
    ];
    for (name, meaning) in entries {
        roff.control("TP", [] as [&str; 0]);
        roff.text([bold(name)]);
        roff.text([roman(meaning)]);
    }
}

fn files(roff: &mut Roff, name: &str) {
    roff.control("SH", ["FILES"]);
    let mut entries: Vec<(&str, &str)> = vec![
        (
            "DIR/is.properties, DIR/security.properties",
            "The RV&S server's settings (mksis.*) and mailgate's own (mailgate.*), DIR being the config folder.",
        ),
        (
            "DIR/mailgate.key",
            "The key that decrypts ENC(...) values (mailgate.crypto.keyFile; readable by its owner only).",
        ),
        (
            "DIR/mailgate-outbox.db",
            "The SQLite outbox (mailgate.outbox.url), with its -wal and -shm files, .lock and the .workers folder of worker locks.",
        ),
    ];
    if name == "mailgate" || name == "mailgate-sendmail" {
        entries.push((
            "/etc/mailgate",
            "The config folder of the binary called sendmail; an aliases file there is named by mailgate.sendmail.aliases.",
        ));
    }
    if name == "mailgate" || name == "mailgate-relay" {
        entries.push((
            "mailgate.relay.usersFile",
            "The relay's local AUTH users, the file this key names: name:argon2-hash lines.",
        ));
    }
    for (file, meaning) in entries {
        roff.control("TP", [] as [&str; 0]);
        roff.text([bold(file)]);
        roff.text([roman(meaning)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_status_list_is_split_from_the_notes() {
        let (codes, notes) = exit_status(
            "Exit status: 0 stopped (in hand finished); 74 the outbox cannot be read; 78 configuration error (also: a listen address it cannot bind). SIGHUP reloads the settings.",
        );
        assert_eq!(
            codes,
            [
                ("0".to_owned(), "stopped (in hand finished)".to_owned()),
                ("74".to_owned(), "the outbox cannot be read".to_owned()),
                (
                    "78".to_owned(),
                    "configuration error (also: a listen address it cannot bind)".to_owned()
                ),
            ]
        );
        assert_eq!(notes, "SIGHUP reloads the settings.");
    }

    #[test]
    fn every_page_exists_that_another_names() {
        let pages = pages();
        let files: Vec<&str> = pages.iter().map(|p| p.file.as_str()).collect();
        for wanted in [
            "mailgate.1",
            "mailgate-send.1",
            "mailgate-sendmail.8",
            "mailgate-relay.8",
            "mailgate-queue-list.1",
        ] {
            assert!(files.contains(&wanted), "{wanted} in {files:?}");
        }
        for page in &pages {
            let text = String::from_utf8_lossy(&page.roff);
            for reference in text.split("\\fBmailgate").skip(1) {
                // `\fBmailgate-send\fR(1)` names mailgate-send.1.
                let Some((name, rest)) = reference.split_once("\\fR(") else {
                    continue;
                };
                let section = rest.chars().next().unwrap_or('?');
                let file = format!("mailgate{}.{section}", name.replace("\\-", "-"));
                assert!(files.contains(&file.as_str()), "{} names {file}", page.file);
            }
            assert!(
                text.contains(".SH ENVIRONMENT") && text.contains(".SH FILES"),
                "{}",
                page.file
            );
        }
        let sendmail = pages
            .iter()
            .find(|p| p.file == "mailgate-sendmail.8")
            .unwrap();
        let text = String::from_utf8_lossy(&sendmail.roff);
        assert!(
            text.contains(".SH \"EXIT STATUS\"") || text.contains(".SH EXIT STATUS"),
            "{text}"
        );
    }
}
