"""Realistic HTML pages for the gating tests and the benchmark."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def read(name: str) -> bytes:
    """A fixture page from this folder, as bytes."""
    return (HERE / name).read_bytes()


_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>The Lighthouse Keeper · Storyforge</title>
<meta name="description" content="A keeper on the Caspian coast counts ships and stars.">
<link rel="preload" href="/static/fonts/serif.woff2" as="font" type="font/woff2" crossorigin>
<link rel="stylesheet" href="/static/site.css?v=31">
<style>
  :root { --ink: #1d1d1f; --paper: #fafaf7; }
  body > header nav a[aria-current="page"] { font-weight: 700; }
  .chapter::before { content: "<script>"; display: none; }
</style>
<script type="importmap">{"imports": {"three": "/static/vendor/three.module.js"}}</script>
<script type="application/ld+json">
{"@context": "https://schema.org", "@type": "CreativeWork", "name": "The Lighthouse Keeper",
 "author": {"@type": "Person", "name": "L. Mammadova"}, "inLanguage": "en"}
</script>
<script nonce="r4nd0m">window.STORYFORGE = {"story": "lighthouse", "chapters": 12, "api": "/api/v1"};</script>
<script type="text/plain" data-consent="analytics" nonce="r4nd0m" async src="/static/analytics.js"></script>
<script async src="https://www.googletagmanager.com/gtag/js?id=G-TEST000001"></script>
<script>
  window.dataLayer = window.dataLayer || [];
  function gtag(){dataLayer.push(arguments);}
  gtag('js', new Date());
  gtag('config', 'G-TEST000001');
</script>
<!-- <script src="https://old-cdn.example.net/legacy.js"></script> kept for reference -->
<SCRIPT TYPE="module" SRC="/static/stage.js" DEFER></SCRIPT>
</head>
<body class="story">
<svg xmlns="http://www.w3.org/2000/svg" style="display:none"><symbol id="i-play" viewBox="0 0 24 24"><title>Play</title><path d="M8 5v14l11-7z"/></symbol></svg>
<header><nav aria-label="Main"><a href="/">Home</a> <a href="/story/lighthouse" aria-current="page">Stories</a> <a href="/about">About</a> <a href="/consent/">Cookie settings</a></nav></header>
<main>
"""

_CHAPTER = """<section class="chapter" id="ch-{n}" data-chapter="{n}">
  <h2>Chapter {n}: The light that answered</h2>
  <p>The keeper climbed the {n} steps at dusk, as he had every night for thirty years. Below him the
  Caspian lay flat and grey; above him the first stars came out over Absheron. He wound the clockwork,
  trimmed the wick and wrote in the log: <q>wind north-west, sea calm, {n} ships</q>.</p>
  <figure><img src="/static/img/ch{n}.webp" alt="The lighthouse at dusk, chapter {n}" width="1200" height="675" loading="lazy" decoding="async">
  <figcaption>Illustration for chapter {n} &mdash; drawn by the author.</figcaption></figure>
  <p>That night a light answered from the sea where no ship should be. It blinked three times, waited,
  and blinked again. He checked the charts, the almanac, the radio: nothing. <a href="/story/lighthouse/{n}#notes" data-track='{{"event": "open-notes", "chapter": {n}}}'>Read the keeper's notes</a>.</p>
  <div class="stage" data-scene="scene-{n}" data-options='{{"fog": 0.{n}, "label": "a > b"}}'><button type="button" class="play"><svg width="24" height="24"><use href="#i-play"/></svg> Walk into the scene</button></div>
  <script nonce="r4nd0m">document.querySelector('[data-scene="scene-{n}"]').dataset.ready = "1"; if (1 < 2 && "</div>") {{ /* ok */ }}</script>
  <ul class="choices"><li><a href="?choice=a&amp;ch={n}">Signal back</a></li><li><a href="?choice=b&amp;ch={n}">Wait until morning</a></li></ul>
</section>
<!-- chapter {n} end -->
"""

_EMBED = """<section class="extras"><h2>Behind the story</h2>
<iframe data-consent="marketing" data-consent-src="https://www.youtube-nocookie.com/embed/aqz-KE-bpKQ" title="Making of The Lighthouse Keeper" width="560" height="315" allowfullscreen></iframe>
<iframe src="https://player.vimeo.com/video/76979871" title="Trailer" width="640" height="360"></iframe>
<form method="post" action="/newsletter"><label>E-mail <input type="email" name="email" placeholder="you@example.com"></label><textarea name="note"><script>not a script</script></textarea><button>Subscribe</button></form>
</section>
"""

_TAIL = """</main>
<footer><small>Storyforge &mdash; interactive 3D stories. <a href="/about">Privacy</a></small></footer>
<script src="/static/app.js" defer nonce="r4nd0m"></script>
<script type="text/plain" data-consent="marketing" src="https://connect.facebook.net/en_US/fbevents.js"></script>
</body>
</html>
"""


def realistic_page(size: int = 50_000) -> bytes:
    """A story page of about ``size`` bytes: many scripts, gated and not, trackers, embeds."""
    parts = [_HEAD]
    total = len(_HEAD) + len(_EMBED) + len(_TAIL)
    n = 1
    while total < size:
        chapter = _CHAPTER.format(n=n)
        parts.append(chapter)
        total += len(chapter)
        n += 1
        if n == 4:
            parts.append(_EMBED)
    if n <= 4:
        parts.append(_EMBED)
    parts.append(_TAIL)
    return "".join(parts).encode("utf-8")
