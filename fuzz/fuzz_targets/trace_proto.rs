#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| redwatch_fuzz::trace_proto(data));
