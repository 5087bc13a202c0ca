/* puts: prints the NUL-terminated string at %esi on COM1 (32-bit code). */
#define PUTS_FUNCTION  \
puts:                  \
  push %eax;           \
  push %edx;           \
  mov $COM1, %dx;      \
2:                     \
  lodsb;               \
  test %al, %al;       \
  jz 3f;               \
  out %al, %dx;        \
  jmp 2b;              \
3:                     \
  pop %edx;            \
  pop %eax;            \
  ret

#define EXIT(value)          \
  mov $value, %al;           \
  mov $DEBUG_EXIT, %dx;      \
  out %al, %dx;              \
4:                           \
  hlt;                       \
  jmp 4b
