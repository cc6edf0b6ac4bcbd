// Swagger UI for the fake's two OpenAPI documents, from packaged files only.
"use strict";
(function () {
  var TOKEN_KEY = "mock_server.admin_token";
  var admin = new URLSearchParams(location.search).get("doc") === "admin";
  document.getElementById(admin ? "doc-admin" : "doc-api").classList.add("current");

  // Swagger UI 4 renders OpenAPI 3.0; the fake's document is 3.1. Its few 3.1-only forms
  // (type lists with "null", const, numeric exclusive bounds) are rewritten to their 3.0 spelling.
  function downgrade(node) {
    if (Array.isArray(node)) { node.forEach(downgrade); return; }
    if (!node || typeof node !== "object") return;
    if (Array.isArray(node.type)) {
      var types = node.type.filter(function (t) { return t !== "null"; });
      if (types.length < node.type.length) node.nullable = true;
      if (types.length === 1) node.type = types[0];
      else { delete node.type; node.anyOf = types.map(function (t) { return { type: t }; }); }
    }
    if (Object.prototype.hasOwnProperty.call(node, "const")) { node["enum"] = [node["const"]]; delete node["const"]; }
    ["exclusiveMinimum", "exclusiveMaximum"].forEach(function (k) {
      if (typeof node[k] === "number") {
        node[k === "exclusiveMinimum" ? "minimum" : "maximum"] = node[k];
        node[k] = true;
      }
    });
    if (node.type && Array.isArray(node.examples) && node.example === undefined) {
      node.example = node.examples[0]; delete node.examples;
    }
    Object.keys(node).forEach(function (k) { downgrade(node[k]); });
  }

  window.ui = SwaggerUIBundle({
    url: admin ? "/__admin/openapi.json" : "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,  // the default validator is a web service: nothing leaves the machine
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "BaseLayout",
    requestInterceptor: function (req) {
      var token = sessionStorage.getItem(TOKEN_KEY);
      var path = new URL(req.url, location.href).pathname;
      if (token && path.indexOf("/__admin") === 0) req.headers["X-Admin-Token"] = token;
      return req;
    },
    responseInterceptor: function (res) {
      var path = new URL(res.url, location.href).pathname;
      if (path === "/openapi.json" && res.body && /^3\.1/.test(String(res.body.openapi))) {
        var doc = res.body;
        downgrade(doc);
        doc.openapi = "3.0.3";
        res.body = doc;
        res.obj = doc;
        res.data = res.text = JSON.stringify(doc);
      }
      return res;
    }
  });
})();
