/*
 * proto.c - the protocol-core entries every core serves alike, from the ProtoState at the start
 * of its session (see proto.h).
 */
#include "util/proto.h"

guint
proto_take_delay_ms(gpointer core)
{
    ProtoState *p = core;
    guint d = p->delay_ms;
    p->delay_ms = 0;
    return d;
}

gboolean
proto_tls_pending(gpointer core)
{
    return ((ProtoState *)core)->tls_pending;
}

void
proto_tls_on(gpointer core)
{
    ProtoState *p = core;
    p->tls_pending = FALSE;
    p->tls = TRUE;
}
