//! One frame's payload decoded as every message type either side accepts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hoover_proto::fuzzing::decode_every_message(data);
});
