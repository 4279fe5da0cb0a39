# cmake -DINPUT=file -DOUTPUT=file.c -DNAME=symbol -P embed.cmake
# Writes a C file defining `const unsigned char NAME[]` and `NAME_size`.
file(READ ${INPUT} _hex HEX)
string(LENGTH "${_hex}" _length)
math(EXPR _size "${_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," _bytes "${_hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" _bytes "${_bytes}")
file(WRITE ${OUTPUT} "/* generated from ${INPUT} by vmm/cmake/embed.cmake */\n#include <stddef.h>\nconst unsigned char ${NAME}[] = {\n${_bytes}\n};\nconst size_t ${NAME}_size = ${_size};\n")
