//! Frames then messages from an untrusted byte stream, as the server reads a connection: it
//! must return an error, never panic, never allocate past the frame limit.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hoover_proto::fuzzing::read_all_requests(data);
});
