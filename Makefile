# propensity: PGXS build.  `make && make install`, then the tests through
# test/run-tests.sh (which needs no running server) or `make installcheck`.

EXTENSION  = propensity
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(srcdir)/propensity.control)
MODULE_big = propensity

CORE_OBJS = src/core/features.o src/core/generator.o
GLUE_OBJS = src/propensity.o src/util.o src/huge_alloc.o src/worker.o src/crash_guard.o
GLUE_OBJS += src/source_queue.o src/source_kafka.o src/source.o src/decode.o src/schema_registry.o src/ingest.o src/store.o src/store_scan.o src/store_partition.o
GLUE_OBJS += src/attribution_settings.o src/attribution_engine.o src/attribution_changelog.o
GLUE_OBJS += src/attribution_scan.o src/attribution_backfill.o src/attribution_agg.o
GLUE_OBJS += src/score.o src/score_scan.o src/history.o src/models.o src/schedule.o
GLUE_OBJS += src/features_agg.o src/logistic_agg.o src/generator_fn.o
CORE_OBJS += src/core/core_alloc.o src/core/user_table.o src/core/attribution.o src/core/attr_engine.o src/core/attr_batch.o
CORE_OBJS += src/core/avro_decode.o src/core/logistic.o src/core/history.o
OBJS = $(CORE_OBJS) $(GLUE_OBJS)

# The released install script of 0.1.0 and the upgrade scripts never change;
# the install script of the current version is built from sql/propensity.sql.
DATA = sql/propensity--0.1.0.sql $(wildcard sql/propensity--*--*.sql)
DATA_built = sql/propensity--$(EXTVERSION).sql

REGRESS = features score models partitions generator errors parallel attribution attribution_stream queue ingest_limits logistic fitting history over_time privileges registry operations null_args catalogue
REGRESS_OPTS = --temp-config=test/regress.conf

PG_CPPFLAGS = -I$(srcdir)/src -DPROPENSITY_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS = -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare $(PG_CFLAGS_EXTRA)
SHLIB_LINK = -lavro -lrdkafka -lcurl -lm

EXTRA_CLEAN = test/kafka/mock_cluster test/core/test_core test/core/test_core_vg test/core/test_avro test/core/test_avro_vg src/core/event_schema.h test/core/fuzz_generator test/fuzz/fuzz_avro results regression.diffs regression.out tmp_check

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Standalone tests of the pure-C core, under ASan and UBSan.
CORE_TEST_CFLAGS = -std=c99 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -Isrc \
	-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
CORE_SRCS = src/core/features.c src/core/generator.c src/core/core_alloc.c src/core/user_table.c \
	src/core/attribution.c src/core/attr_engine.c src/core/attr_batch.c src/core/logistic.c src/core/history.c
CORE_TEST_SRCS = test/core/test_core.c test/core/test_attribution.c test/core/test_attr_engine.c test/core/test_attr_batch.c test/core/test_logistic.c test/core/test_history.c

test/core/test_core: $(CORE_TEST_SRCS) $(CORE_SRCS) src/core/*.h test/core/check.h
	$(CC) $(CORE_TEST_CFLAGS) -o $@ $(CORE_TEST_SRCS) $(CORE_SRCS) -lm

.PHONY: test-core bench bench-attribution
test-core: test/core/test_core test/core/test_avro
	./test/core/test_core
	./test/core/test_avro

# The reader schema, compiled in from the wire contract in schemas/.
src/core/event_schema.h: schemas/event.avsc
	{ echo '/* generated from schemas/event.avsc by the Makefile */'; \
	  echo 'static const char event_schema_json[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; \
	  echo ';'; } > $@

src/core/avro_decode.o src/decode.o: src/core/event_schema.h

AVRO_TEST_SRCS = test/core/test_avro.c src/core/avro_decode.c
test/core/test_avro: $(AVRO_TEST_SRCS) src/core/avro_decode.h src/core/event_schema.h test/core/check.h
	$(CC) $(CORE_TEST_CFLAGS) -o $@ $(AVRO_TEST_SRCS) -lavro

test/core/test_avro_vg: $(AVRO_TEST_SRCS) src/core/avro_decode.h src/core/event_schema.h test/core/check.h
	$(CC) -std=c99 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -Isrc -o $@ $(AVRO_TEST_SRCS) -lavro

bench:
	bash test/bench/bench.sh

# Coverage-guided fuzzing of the Avro decoder (libFuzzer, clang):
# make fuzz-avro [FUZZ_SECONDS=60]
FUZZ_SECONDS ?= 60
test/fuzz/fuzz_avro: test/fuzz/fuzz_avro.c src/core/avro_decode.c src/core/avro_decode.h src/core/event_schema.h
	clang -g -O1 -Isrc -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-o $@ test/fuzz/fuzz_avro.c src/core/avro_decode.c -lavro

.PHONY: fuzz-avro
fuzz-avro: test/fuzz/fuzz_avro
	mkdir -p test/fuzz/corpus
	./test/fuzz/fuzz_avro -max_total_time=$(FUZZ_SECONDS) -max_len=8192 test/fuzz/corpus test/fuzz/seeds

# The same tests without sanitizers, under Valgrind's memcheck.
test/core/test_core_vg: $(CORE_TEST_SRCS) $(CORE_SRCS) src/core/*.h test/core/check.h
	$(CC) -std=c99 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -Isrc -o $@ $(CORE_TEST_SRCS) $(CORE_SRCS) -lm

.PHONY: test-core-valgrind
test-core-valgrind: test/core/test_core_vg test/core/test_avro_vg
	valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=all ./test/core/test_core_vg
	valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=all ./test/core/test_avro_vg

# TAP tests (PostgreSQL::Test::Cluster): crashes and concurrent producers.
PROVE_TESTS = test/t/*.pl
.PHONY: tap
tap: test/kafka/mock_cluster
	$(prove_installcheck)

# librdkafka's mock cluster, the Kafka broker of the TAP tests
test/kafka/mock_cluster: test/kafka/mock_cluster.c
	$(CC) -std=c99 -O1 -g -Wall -Wextra -Werror -o $@ $< -lrdkafka

# Kafka benchmark: the worker on a Kafka topic against binary COPY and the embedded queue.
.PHONY: bench-kafka
bench-kafka:
	bash test/bench/kafka.sh

# Ingest benchmark: the worker against binary COPY, and latency.
.PHONY: bench-ingest
bench-ingest:
	bash test/bench/ingest.sh

# Attribution benchmark: batch (plain SQL, aggregate, backfill) and streaming.
bench-attribution:
	bash test/bench/attribution.sh

# Fitting benchmark: IRLS iterations serial/parallel vs plain SQL, and
# scoring with a fitted model (EXAMPLES, EVENTS, USERS resize it).
.PHONY: bench-fit
bench-fit:
	bash test/bench/fit.sh

# Propensity-over-time benchmark: the history built, incremental per-batch
# refresh against rescoring the affected users, rescoring every user
# against plain SQL.
.PHONY: bench-history
bench-history:
	bash test/bench/history.sh

sql/propensity--$(EXTVERSION).sql: sql/propensity.sql
	cp $< $@

# the version compiled in follows the control file
src/worker.o: propensity.control
