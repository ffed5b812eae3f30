# Cross-compiles for 64-bit Arm Linux with Debian's cross toolchain (g++-aarch64-linux-gnu). The header-only
# dependencies (Eigen, doctest, nlohmann-json) are the build machine's; the compiled one, SentencePiece, comes from
# Debian's arm64 packages unpacked (not installed: its -dev package cannot sit beside the amd64 one) into
# QLORA_AARCH64_SYSROOT, which scripts/test-portable prepares. Test programs run through qemu-aarch64 (qemu-user),
# also when CTest or doctest_discover_tests starts them.
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DQLORA_AARCH64_SYSROOT=$PWD/build-aarch64-sysroot -DQLORA_CUDA=OFF
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(QLORA_AARCH64_SYSROOT "" CACHE PATH "Folder holding Debian's arm64 library packages unpacked (dpkg -x)")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES QLORA_AARCH64_SYSROOT)
if(QLORA_AARCH64_SYSROOT)
  set(qlora_arm64_libdir ${QLORA_AARCH64_SYSROOT}/usr/lib/aarch64-linux-gnu)
  # pkg-config describes the unpacked arm64 libraries, with their paths moved under the folder.
  set(ENV{PKG_CONFIG_LIBDIR} ${qlora_arm64_libdir}/pkgconfig)
  set(ENV{PKG_CONFIG_SYSROOT_DIR} ${QLORA_AARCH64_SYSROOT})
  set(CMAKE_EXE_LINKER_FLAGS_INIT "-Wl,-rpath,${qlora_arm64_libdir}")
else()
  set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
endif()
find_program(QLORA_QEMU_AARCH64 qemu-aarch64)
if(QLORA_QEMU_AARCH64)
  # The C and C++ runtimes of the cross toolchain live under /usr/aarch64-linux-gnu.
  set(CMAKE_CROSSCOMPILING_EMULATOR ${QLORA_QEMU_AARCH64};-L;/usr/aarch64-linux-gnu)
endif()
