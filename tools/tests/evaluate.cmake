# cmake -DQLORA=<qlora binary> -DWORK_DIR=<dir> -P evaluate.cmake: runs `qlora evaluate` on a small set and checks
# the printed scores (a perfect match scores BLEU 100, ROUGE-L 1, exact match 1).
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
file(WRITE ${WORK_DIR}/pred.txt "The margin is 12.5%.\nRevenue was $1,250,000.\n")
file(WRITE ${WORK_DIR}/ref.txt "The margin is 12.5%.\nRevenue was $1,250,000.\n")
execute_process(COMMAND ${QLORA} evaluate --predictions ${WORK_DIR}/pred.txt --references ${WORK_DIR}/ref.txt
                        --output ${WORK_DIR}/scores.json
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "qlora evaluate failed (${rc}): ${out}")
endif()
file(READ ${WORK_DIR}/scores.json scores)
string(JSON bleu GET "${scores}" bleu)
string(JSON em GET "${scores}" numeric_exact_match)
if(NOT bleu GREATER 99.999 OR NOT em GREATER 0.999)
  message(FATAL_ERROR "unexpected scores: ${scores}")
endif()
file(WRITE ${WORK_DIR}/short.txt "only one line\n")
execute_process(COMMAND ${QLORA} evaluate --predictions ${WORK_DIR}/short.txt --references ${WORK_DIR}/ref.txt
                ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc OR NOT err MATCHES "1 predictions but 2 references")
  message(FATAL_ERROR "a count mismatch must fail with a clear message, got (${rc}): ${err}")
endif()
