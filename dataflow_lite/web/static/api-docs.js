/* Swagger UI on this server's OpenAPI document. While logged in, "Try it out" calls the API
   with the session and its CSRF token; an API key given with "Authorize" takes precedence. */
(function () {
  "use strict";
  var node = document.getElementById("swagger-ui");
  if (!node || !window.SwaggerUIBundle) return;
  var token = document.querySelector('meta[name="csrf-token"]').content;
  var withSession = node.dataset.session === "yes";
  node.textContent = "";
  window.ui = window.SwaggerUIBundle({
    url: node.dataset.specUrl,
    domNode: node,
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    requestInterceptor: function (request) {
      if (withSession && !request.headers.Authorization) {
        request.headers["X-CSRFToken"] = token;
      }
      return request;
    },
  });
})();
