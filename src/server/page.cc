// The chat page's source. It keeps the conversation in the browser, sends it whole on each turn
// (the server is stateless), and reads the SSE stream with fetch() + a ReadableStream reader.
#include "server/page.h"

namespace lutq::server {

std::string_view chat_page_html() {
  static constexpr std::string_view kPage = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lutq chat</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 0 auto; padding: 1rem; }
  #log { border: 1px solid #ccc; border-radius: 6px; padding: .5rem; min-height: 20rem; overflow-y: auto; }
  .msg { white-space: pre-wrap; margin: .4rem 0; padding: .4rem .6rem; border-radius: 6px; }
  .user { background: #e8f0fe; } .assistant { background: #f1f3f4; } .error { background: #fde8e8; }
  form { display: flex; gap: .5rem; margin-top: .5rem; } textarea { flex: 1; height: 3.5rem; }
  label { font-size: .9rem; margin-right: 1rem; }
</style>
</head>
<body>
<h1>lutq chat</h1>
<div>
  <label>temperature <input id="temp" type="number" value="0.7" min="0" max="2" step="0.1" style="width:4rem"></label>
  <label>max tokens <input id="maxtok" type="number" value="256" min="1" style="width:5rem"></label>
  <button id="reset" type="button">New chat</button>
</div>
<div id="log"></div>
<form id="form">
  <textarea id="input" placeholder="Type a message (Enter sends, Shift+Enter new line)"></textarea>
  <button id="send">Send</button>
</form>
<script>
const log = document.getElementById('log');
const input = document.getElementById('input');
const send = document.getElementById('send');
let messages = [];

function add(cls, text) {
  const d = document.createElement('div');
  d.className = 'msg ' + cls;
  d.textContent = text;
  log.appendChild(d);
  log.scrollTop = log.scrollHeight;
  return d;
}

document.getElementById('reset').onclick = () => { messages = []; log.textContent = ''; };
input.addEventListener('keydown', e => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); document.getElementById('form').requestSubmit(); }
});

document.getElementById('form').onsubmit = async e => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  input.value = '';
  messages.push({role: 'user', content: text});
  add('user', text);
  const out = add('assistant', '');
  send.disabled = true;
  let reply = '';
  try {
    const res = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({model: 'lutq', messages, stream: true,
                            temperature: parseFloat(document.getElementById('temp').value),
                            max_tokens: parseInt(document.getElementById('maxtok').value)})
    });
    if (!res.ok) {
      const err = await res.json().catch(() => ({error: {message: res.statusText}}));
      throw new Error(err.error ? err.error.message : res.statusText);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += decoder.decode(value, {stream: true});
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!event.startsWith('data: ')) continue;
        const data = event.slice(6);
        if (data === '[DONE]') continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices.length ? chunk.choices[0].delta : {};
        if (delta.content) { reply += delta.content; out.textContent = reply; log.scrollTop = log.scrollHeight; }
      }
    }
    messages.push({role: 'assistant', content: reply});
  } catch (err) {
    out.className = 'msg error';
    out.textContent = 'Error: ' + err.message;
    messages.pop();
  } finally {
    send.disabled = false;
    input.focus();
  }
};
</script>
</body>
</html>
)html";
  return kPage;
}

}  // namespace lutq::server
