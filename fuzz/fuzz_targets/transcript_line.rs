//! Arbitrary bytes as the new bytes of a transcript version: split into lines (in two uneven
//! feeds) and parsed; bad lines are errors, never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hoover_transcript::fuzzing::split_and_parse(data);
});
