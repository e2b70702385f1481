//! Fuzzes `ImageRef::parse` on arbitrary UTF-8: it must never panic, and whatever it accepts
//! must print (normalised and familiar) to strings that parse back to the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use microbadger::reference::ImageRef;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = ImageRef::parse(input) else {
        return;
    };
    let display = r.to_string();
    let reparsed = ImageRef::parse(&display)
        .unwrap_or_else(|e| panic!("{input:?} -> {display:?} does not parse: {e}"));
    assert_eq!(reparsed, r, "{input:?} -> {display:?}");
    assert_eq!(
        reparsed.to_string(),
        display,
        "normalisation is not idempotent"
    );
    let familiar = r.familiar();
    let from_familiar = ImageRef::parse(&familiar)
        .unwrap_or_else(|e| panic!("{input:?} -> {familiar:?} does not parse: {e}"));
    assert_eq!(from_familiar, r, "{input:?} -> {familiar:?}");
    assert!(r.full_name().len() <= 255);
});
