/* The protocol handlers a connection can speak, and what the app layer calls on them: one
 * header per protocol, all included here. */
#ifndef SY_PROTO_H
#define SY_PROTO_H

#include "proto_h2.h"
#include "proto_http1.h"
#include "proto_raw.h"
#include "proto_ws.h"
#include "upgrade.h"

#endif
