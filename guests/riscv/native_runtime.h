// Host stand-in for runtime.h, so benchmark programs also build natively
// (`cargo xtask bench` compares the JIT with native execution of the same C).
#pragma once
#include <stdint.h>
#include <stdio.h>
typedef uint64_t u64;
typedef int64_t i64;
typedef uint32_t u32;
typedef int32_t i32;
static inline void print_kv(const char *key, u64 v) { printf("%s=0x%016llx\n", key, (unsigned long long)v); }
