# traces/gen.mk: the routing helper's fragment of the traces/ build (generators,
# re-routing, rescaling, statistics and their commands).  Included at the end of
# traces/local.mk so that the two parts never edit the same file.
