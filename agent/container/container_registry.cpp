#include "container/container_registry.h"
