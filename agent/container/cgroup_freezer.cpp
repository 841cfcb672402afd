#include "container/cgroup_freezer.h"
