# bench_store: S3Store (on the test radosgw) next to FileStore, 1,000 x 128 KiB
# chunks at 1/8/32 in flight. Included from tests/bench/CMakeLists.txt.
isr_add_test(bench_store SOURCES ${CMAKE_CURRENT_LIST_DIR}/bench_store.cpp LABELS bench TIMEOUT 900)
