/* Debian's linux-source-6.1 carries a stable backport of dirty_log_test.c
   that uses TEST_ASSERT_EQ, which 6.1's test_util.h lacks (upstream added it
   in 6.5). Force-included into every selftest compile. */
#ifndef TEST_ASSERT_EQ
#define TEST_ASSERT_EQ(a, b) TEST_ASSERT((a) == (b), "%s == %s", #a, #b)
#endif
