# oneDNN for the CPU GEMMs (include/qlora/ops/matmul_onednn.hpp): its JIT fp32 GEMM for whatever ISA the CPU has
# (chosen at run time, so one binary runs on every x86-64), and bf16 operands with fp32 accumulation on CPUs with
# AVX512-BF16 or AMX. QLORA_ONEDNN: AUTO (the default: used when found), ON (an error when not found) or OFF.
# Debian: apt-get install libdnnl-dev. Found by its header and library (not dnnl-config.cmake, which would pull in
# the OpenCL loader that Debian's GPU runtime build lists). When found, the library target qlora itself carries
# QLORA_HAVE_ONEDNN=1 and links libdnnl in this build: every translation unit of a program must see the same
# backends. A project using an installed qlora defines QLORA_HAVE_ONEDNN=1 and links dnnl itself to get them.
set(QLORA_ONEDNN AUTO CACHE STRING "oneDNN CPU GEMMs (fp32, and bf16 where the CPU has bf16 units): AUTO, ON or OFF")
set_property(CACHE QLORA_ONEDNN PROPERTY STRINGS AUTO ON OFF)
set(QLORA_HAVE_ONEDNN OFF)
if(QLORA_ONEDNN STREQUAL "AUTO" AND CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  # Debian's libdnnl runs on GNU OpenMP (libgomp); clang's programs use LLVM's libomp, and two OpenMP runtimes in one
  # process each start their own thread team. QLORA_ONEDNN=ON overrides.
  message(STATUS "qlora: oneDNN left out with ${CMAKE_CXX_COMPILER_ID} (Debian's libdnnl uses GNU OpenMP; "
                 "QLORA_ONEDNN=ON to use it anyway): the CPU GEMMs are Eigen's")
elseif(NOT QLORA_ONEDNN STREQUAL "OFF" AND NOT CMAKE_CROSSCOMPILING)
  find_path(QLORA_ONEDNN_INCLUDE_DIR oneapi/dnnl/dnnl.hpp)
  find_library(QLORA_ONEDNN_LIBRARY NAMES dnnl)
  if(QLORA_ONEDNN_INCLUDE_DIR AND QLORA_ONEDNN_LIBRARY)
    file(STRINGS "${QLORA_ONEDNN_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h" qlora_dnnl_version
         REGEX "#define DNNL_VERSION_(MAJOR|MINOR|PATCH) ")
    string(REGEX REPLACE ".*MAJOR ([0-9]+).*MINOR ([0-9]+).*PATCH ([0-9]+).*" "\\1.\\2.\\3" qlora_dnnl_version
           "${qlora_dnnl_version}")
    add_library(qlora_onednn INTERFACE)
    target_include_directories(qlora_onednn SYSTEM INTERFACE ${QLORA_ONEDNN_INCLUDE_DIR})
    target_link_libraries(qlora_onednn INTERFACE ${QLORA_ONEDNN_LIBRARY})
    target_compile_definitions(qlora_onednn INTERFACE QLORA_HAVE_ONEDNN=1)
    # In this build only: an installed qlora is header-only with Eigen's GEMM unless its user adds the same.
    target_link_libraries(qlora INTERFACE $<BUILD_INTERFACE:qlora_onednn>)
    set(QLORA_HAVE_ONEDNN ON)
    message(STATUS "qlora: oneDNN ${qlora_dnnl_version} (${QLORA_ONEDNN_LIBRARY}): CPU GEMMs in fp32 and bf16")
  elseif(QLORA_ONEDNN STREQUAL "ON")
    message(FATAL_ERROR "QLORA_ONEDNN=ON but oneDNN was not found: apt-get install libdnnl-dev")
  else()
    message(STATUS "qlora: no oneDNN (apt-get install libdnnl-dev): the CPU GEMMs are Eigen's, fp32 only")
  endif()
endif()
