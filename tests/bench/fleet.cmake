# The fleet benchmark (issue 18): N kiosks' store traffic against one store,
# FileStore and S3Store on the test radosgw, N = 1, 10, 50, 200; fails only on
# lost data, a lock held twice or a session error. bench_fleet_quick is the
# smoke check (N = 1 and 4, a few seconds each). Included from
# tests/bench/CMakeLists.txt.
add_executable(bench_fleet ${CMAKE_CURRENT_LIST_DIR}/bench_fleet.cpp)
target_link_libraries(bench_fleet PRIVATE isr_testsupport)
isr_target_flags(bench_fleet)
add_test(NAME bench_fleet
  COMMAND bench_fleet --out ${CMAKE_BINARY_DIR}/bench-fleet-results)
add_test(NAME bench_fleet_quick COMMAND bench_fleet --quick)
set_tests_properties(bench_fleet bench_fleet_quick PROPERTIES
  LABELS bench SKIP_RETURN_CODE 77 ENVIRONMENT "${ISR_TEST_ENV}")
set_tests_properties(bench_fleet PROPERTIES TIMEOUT 5400)
set_tests_properties(bench_fleet_quick PROPERTIES TIMEOUT 600)
