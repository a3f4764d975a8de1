#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::topic_match(data));
