// The doctest runner of qlora_tests (CPU). Run one folder's suite with -ts=core, -ts=autograd, -ts=ops, -ts=quant.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
