#!/usr/bin/env bash
# tests/integration/test_ws_deflate_node.sh: permessage-deflate against Node's `ws` client
# (perMessageDeflate): test_ws_node.sh's harness with tests/integration/ws_deflate_app.lua and
# tests/integration/ws_node_deflate_client.js. Run from the repo root with SWITCHYARD_BIN set.
here=$(dirname "$0")
SY_NODE_APP="$here/ws_deflate_app.lua" SY_NODE_CLIENT="$here/ws_node_deflate_client.js" \
  exec bash "$here/test_ws_node.sh"
