//! Encrypted secret values for mailgate's Java `.properties` files.
//!
//! A secret property (the basic-auth password, the OAuth client secret) can
//! hold `ENC(v1:...)` instead of its plaintext: an XChaCha20-Poly1305
//! ciphertext bound to the property name, under a 32-byte key kept in a key
//! file. This crate
//!
//! * loads and creates key files ([`SecretKey::load`],
//!   [`SecretKey::load_or_create`], [`SecretKey::create`]),
//! * encrypts and decrypts single values ([`encrypt_value`],
//!   [`decrypt_value`], [`is_encrypted`]),
//! * edits properties files in place, byte for byte ([`encrypt_file`],
//!   [`encrypt_files`], [`plaintext_secrets`], [`find_secrets`],
//!   [`rotate_file`], [`rotate_files`]),
//! * rotates the key across the files and the key file, all or nothing,
//!   and finishes a rotation a crash interrupted ([`rotate_key`],
//!   [`recover_rotation`]),
//! * removes the temporary files a killed run left
//!   ([`remove_stale_temp_files`]). Files are read with
//!   `mailgate-properties`, the reader mailgate's settings loader uses, so
//!   what is encrypted is exactly the value loading would use.
//!
//! # ENC value
//!
//! `ENC(v1:` base64url-without-padding of `key_id[4] || name_tag[4] ||
//! nonce[24] || ciphertext || tag[16]` `)`. The associated data is
//! `"mailgate-secrets/v1\0" || key_id || name_tag || property name`, so a
//! value copied to another property does not decrypt. `key_id` and
//! `name_tag` (truncated SHA-256 with domain separation) let errors say
//! whether the key or the property is wrong, or the value was altered.
//!
//! # Key file
//!
//! Text: `#` comment lines, blank lines, and one line of 64 hex digits (the
//! 32 key bytes). It must not be accessible by group or others (mode
//! `0600`); on Unix a file that is is refused (other systems' permissions
//! are not checked).
//!
//! No error message or `Debug` output of this crate contains a value, a
//! plaintext or key bytes.
//!
//! # Example
//!
//! ```
//! use mailgate_secrets::{SecretKey, decrypt_value, encrypt_file, is_encrypted};
//! use secrecy::ExposeSecret;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let is = dir.path().join("is.properties");
//! # std::fs::write(&is, "# mail\nmksis.logging.emailfrom.password = hunter2\n")?;
//! // `mailgate encrypt`: create the key file on first use, encrypt in place.
//! let (key, _origin) = SecretKey::load_or_create(dir.path().join("mailgate.key"))?;
//! // The keys to encrypt are the caller's: mailgate's strategies declare them.
//! let report = encrypt_file(&is, &["mksis.logging.emailfrom.password"], &key)?;
//! assert_eq!(report.changed[0].line, 2);
//!
//! // Loading: decrypt transparently.
//! let props = mailgate_properties::parse(&std::fs::read(&is)?)?;
//! let value = &props.get("mksis.logging.emailfrom.password").unwrap().value;
//! assert!(is_encrypted(value));
//! let password = decrypt_value(&key, "mksis.logging.emailfrom.password", value)?;
//! assert_eq!(password.expose_secret(), "hunter2");
//! # Ok(())
//! # }
//! ```

mod error;
mod file;
mod key;
mod rotation;
mod value;

pub use error::{Error, KeyName, Location, Result};
pub use file::{
    Occurrence, Report, ValueState, encrypt_file, encrypt_files, find_secrets, plaintext_secrets,
    remove_stale_temp_files, rotate_file, rotate_files,
};
pub use key::{KEY_LEN, KeyOrigin, SecretKey};
#[doc(hidden)]
pub use rotation::rotate_key_with_hook;
pub use rotation::{
    Rotation, RotationStep, pending_key, pending_key_path, recover_rotation, rotate_key,
};
pub use value::{decrypt_value, encrypt_value, is_encrypted, looks_foreign_encrypted};
