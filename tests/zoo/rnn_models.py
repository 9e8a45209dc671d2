"""Recurrent models: a bidirectional multi-layer LSTM tagger, a GRU encoder and an LSTMCell decoder."""
import torch
import torch.nn as nn


class LSTMTagger(nn.Module):
    def __init__(self, vocab_size=40, embedding_dim=16, hidden_dim=24, tagset_size=5, num_layers=2):
        super(LSTMTagger, self).__init__()
        self.word_embeddings = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, num_layers=num_layers, batch_first=True,
                            bidirectional=True, dropout=0.0)
        self.hidden2tag = nn.Linear(2 * hidden_dim, tagset_size)

    def forward(self, sentence):
        embeds = self.word_embeddings(sentence)
        lstm_out, (h_n, c_n) = self.lstm(embeds)
        tag_space = self.hidden2tag(lstm_out)
        tag_scores = torch.log_softmax(tag_space, dim=-1)
        return tag_scores, h_n, c_n


class GRUEncoder(nn.Module):
    """Sequence-first GRU, as in the PyTorch seq2seq tutorial."""

    def __init__(self, input_size=12, hidden_size=20, num_layers=2):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.gru = nn.GRU(input_size, hidden_size, num_layers)
        self.proj = nn.Linear(hidden_size, 4)

    def forward(self, x):
        h0 = torch.zeros(self.num_layers, x.size(1), self.hidden_size)
        output, hidden = self.gru(x, h0)
        return self.proj(output[-1]), hidden


class CellDecoder(nn.Module):
    """Unrolls an LSTMCell and a GRUCell for a fixed number of steps."""

    def __init__(self, input_size=6, hidden_size=10, steps=4):
        super().__init__()
        self.steps = steps
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.gru_cell = nn.GRUCell(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, input_size)

    def forward(self, x):
        h = torch.zeros(x.size(0), self.cell.hidden_size)
        c = torch.zeros(x.size(0), self.cell.hidden_size)
        outputs = []
        for _ in range(self.steps):
            h, c = self.cell(x, (h, c))
            g = self.gru_cell(h)
            x = self.out(g)
            outputs.append(x)
        return torch.stack(outputs, dim=1)
