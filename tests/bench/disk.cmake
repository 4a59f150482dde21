# The virtual disk next to qemu-nbd (included from tests/bench/CMakeLists.txt).
isr_add_test(bench_disk SOURCES bench_disk.cpp LABELS bench TIMEOUT 1800)
