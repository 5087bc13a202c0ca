//! One hart, one instruction at a time, over fuzzer-chosen code, CSRs and
//! page tables, with the soft-TLB checked against fresh walks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| riscv_hart::fuzzing::hart_steps(data));
