//! The `.properties` reader (loading and `encrypt` share it) on arbitrary
//! file bytes: no panic, and every entry's value span lies inside the input
//! (`encrypt` rewrites exactly those bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = mailgate_properties::parse(data) else {
        return;
    };
    for entry in &doc.entries {
        let span = &entry.value_span;
        assert!(span.start <= span.end && span.end <= data.len(), "{span:?}");
        assert!(entry.line >= 1);
    }
});
