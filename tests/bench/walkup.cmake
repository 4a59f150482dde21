# The walk-up benchmark (issue 9): resume and Suspend & Leave of a 1 GiB
# parcel against the 2002 ISR and OpenISR policies over shaped links, run by
# walkup.sh (needs root for network namespaces and tc). Included from
# tests/bench/CMakeLists.txt.
pkg_check_modules(WALKUP_VNCCLIENT REQUIRED IMPORTED_TARGET libvncclient)
add_executable(bench_walkup ${CMAKE_CURRENT_LIST_DIR}/bench_walkup.cpp)
target_link_libraries(bench_walkup PRIVATE isr_testsupport PkgConfig::WALKUP_VNCCLIENT)
isr_target_flags(bench_walkup)
add_executable(isr_delayline ${CMAKE_CURRENT_LIST_DIR}/delayline.cpp)
isr_target_flags(isr_delayline)
isr_add_script_test(bench_walkup
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/walkup.sh ${CMAKE_BINARY_DIR}/bench-walkup-results
  LABELS bench TIMEOUT 2400
  ENVIRONMENT "ISR_BENCH_BIN_DIR=${CMAKE_CURRENT_BINARY_DIR}")
# What a lazy Suspend & Leave would send at other RAM chunk sizes, from two
# versions of a real parcel (a tool, not a test; tests/bench/README.md).
add_executable(bench_ram_granularity ${CMAKE_CURRENT_LIST_DIR}/bench_ram_granularity.cpp)
target_link_libraries(bench_ram_granularity PRIVATE isr_core)
isr_target_flags(bench_ram_granularity)
