"""Text data: sources (packaged corpora, the user's files), tokenizers, and the language scenarios."""
