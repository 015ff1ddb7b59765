/* check.h - the counters and CHECK macro shared by the core test files. */
#ifndef PROPENSITY_TEST_CHECK_H
#define PROPENSITY_TEST_CHECK_H

#include <stdio.h>

extern int	passed;
extern int	failed;

#define CHECK(cond, ...) \
	do { \
		if (cond) \
			passed++; \
		else \
		{ \
			failed++; \
			printf("FAIL %s:%d: ", __FILE__, __LINE__); \
			printf(__VA_ARGS__); \
			printf("\n"); \
		} \
	} while (0)

extern void test_attribution(void);
extern void test_attr_engine(void);
extern void test_attr_batch(void);
extern void test_logistic(void);
extern void test_history(void);

#endif
