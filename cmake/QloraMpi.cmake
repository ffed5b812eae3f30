# MPI for data-parallel training on CPU processes (include/qlora/dist/mpi.hpp, `mpirun -np N qlora finetune`).
# QLORA_MPI: AUTO (the default: used when found), ON (an error when not found) or OFF. Found with CMake's FindMPI
# (Debian: apt-get install libopenmpi-dev openmpi-bin). Gives the target qlora::mpi (MPI's C API and
# QLORA_HAVE_MPI=1) and QLORA_MPIEXEC (the launcher, for the tests) when found.
set(QLORA_MPI AUTO CACHE STRING "Data-parallel training over MPI: AUTO, ON or OFF")
set_property(CACHE QLORA_MPI PROPERTY STRINGS AUTO ON OFF)
if(NOT QLORA_MPI STREQUAL "OFF" AND NOT CMAKE_CROSSCOMPILING)
  find_package(MPI COMPONENTS CXX QUIET)
  if(MPI_CXX_FOUND)
    add_library(qlora_mpi INTERFACE)
    target_link_libraries(qlora_mpi INTERFACE MPI::MPI_CXX)
    target_compile_definitions(qlora_mpi INTERFACE QLORA_HAVE_MPI=1)
    add_library(qlora::mpi ALIAS qlora_mpi)
    set(QLORA_MPIEXEC "${MPIEXEC_EXECUTABLE}")
    message(STATUS "qlora: MPI ${MPI_CXX_VERSION}, launcher ${MPIEXEC_EXECUTABLE}: mpirun -np N qlora finetune")
  elseif(QLORA_MPI STREQUAL "ON")
    message(FATAL_ERROR "QLORA_MPI=ON but no MPI was found: apt-get install libopenmpi-dev openmpi-bin")
  else()
    message(STATUS "qlora: no MPI (apt-get install libopenmpi-dev openmpi-bin): qlora finetune runs as one process")
  endif()
endif()
