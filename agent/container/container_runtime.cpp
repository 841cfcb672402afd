#include "container/container_runtime.h"
