//! Arbitrary bytes as the new bytes of a transcript version, read as the index, the counters
//! and the transcript page read them: split into lines (fed in uneven pieces), parsed, counted,
//! and built into a session; bad lines are errors, never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hoover_transcript::fuzzing::split_and_parse(data);
});
